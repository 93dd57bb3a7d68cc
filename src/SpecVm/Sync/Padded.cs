using System.Runtime.InteropServices;

namespace SpecVm.Sync;

/// <summary>A <see cref="long"/> alone on its own cache line (with a line of padding before and after it).</summary>
/// <remarks>Built like dotnet/runtime's <c>PaddedHeadAndTail</c>: size 3 lines, the hot field at 1 line.</remarks>
[StructLayout(LayoutKind.Explicit, Size = 3 * CacheLine.Size)]
internal struct PaddedLong
{
    /// <summary>The value.</summary>
    [FieldOffset(CacheLine.Size)]
    public long Value;
}

/// <summary>An <see cref="int"/> alone on its own cache line (with a line of padding before and after it).</summary>
[StructLayout(LayoutKind.Explicit, Size = 3 * CacheLine.Size)]
internal struct PaddedInt
{
    /// <summary>The value.</summary>
    [FieldOffset(CacheLine.Size)]
    public int Value;
}
