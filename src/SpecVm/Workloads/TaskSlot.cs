using System.Runtime.InteropServices;
using SpecVm.Sync;

namespace SpecVm.Workloads;

/// <summary>Per-task loop state on its own cache line, so tasks do not false-share their cursors.</summary>
[StructLayout(LayoutKind.Explicit, Size = 2 * CacheLine.Size)]
internal struct TaskSlot
{
    /// <summary>The current mapping's start, or 0 when none is mapped.</summary>
    [FieldOffset(CacheLine.Size)]
    public ulong Base;

    /// <summary>The next byte offset to touch.</summary>
    [FieldOffset(CacheLine.Size + 8)]
    public ulong Offset;

    /// <summary>A pseudo-random state (xorshift).</summary>
    [FieldOffset(CacheLine.Size + 16)]
    public ulong Random;

    /// <summary>A per-task counter (rounds, records).</summary>
    [FieldOffset(CacheLine.Size + 24)]
    public long Count;

    /// <summary>A timestamp (pacing).</summary>
    [FieldOffset(CacheLine.Size + 32)]
    public long Start;

    /// <summary>A native pointer or handle (native workloads).</summary>
    [FieldOffset(CacheLine.Size + 40)]
    public nint Handle;

    /// <summary>Advances the xorshift64 state and returns the new value.</summary>
    public ulong NextRandom()
    {
        ulong x = Random == 0 ? 0x9E3779B97F4A7C15UL : Random;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Random = x;
        return x;
    }
}
