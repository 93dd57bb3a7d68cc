using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using SpecVm.Smp;
using SpecVm.Sync;

namespace SpecVm.Mm;

/// <summary>
/// An address space's lock block (Linux: the part of <c>mm_struct</c> around <c>mmap_lock</c>): the mmap lock's count
/// word and the mm-wide page-table lock (<c>mm-&gt;page_table_lock</c>), placed as its <see cref="LockLayout"/> says.
/// </summary>
/// <remarks>
/// <para>
/// One pinned array (it never moves, so the pointers into it stay valid for as long as it lives: the address space's
/// <see cref="RwSemaphore"/> and <see cref="Paging.PageTable"/> keep it), with a base aligned to
/// <see cref="CacheLine.Size"/> and three lines from there:
/// </para>
/// <code>
///                      Padded (default)              SharedLine
///  base + 0 * Line     padding                       padding
///  base + 1 * Line     mmap_lock count               mmap_lock count, page_table_lock at +8   (one 64-byte line)
///  base + 2 * Line     page_table_lock               padding
/// </code>
/// <para>
/// In Padded each word is alone on its 128-byte line pair (the adjacent-line prefetcher fetches pairs); in SharedLine the
/// two are on one 64-byte line, so real cores false-share them, and the simulator, which names native lines by address,
/// sees one line. Pinned by the layout tests (test/SpecVm.Tests/Layout/MmLockLayoutTests.cs).
/// </para>
/// </remarks>
internal sealed unsafe class MmLockLines : ILabelledLines
{
    /// <summary>Lines in the block (plus one of slack in the array for the alignment).</summary>
    private const int Lines = 3;

    private readonly byte[] _storage;

    /// <summary>Allocates a zeroed block laid out as <paramref name="layout"/> says.</summary>
    /// <param name="layout">Where the page-table lock goes.</param>
    public MmLockLines(LockLayout layout)
    {
        _storage = GC.AllocateArray<byte>((Lines + 1) * CacheLine.Size, pinned: true);
        nint start = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_storage));
        byte* block = (byte*)((start + CacheLine.Size - 1) & ~(nint)(CacheLine.Size - 1));
        Layout = layout;
        Base = block;
        MmapCount = (long*)(block + CacheLine.Size);
        PageTableLock = layout == LockLayout.SharedLine
            ? (PtLock*)(block + CacheLine.Size + sizeof(long))
            : (PtLock*)(block + (2 * CacheLine.Size));
    }

    /// <summary>Every layout's name as the command line and results write it ("padded", "shared-line"), in enum order.</summary>
    public static IReadOnlyList<string> Names { get; } = [.. Enum.GetValues<LockLayout>().Select(Name)];

    /// <summary>The layout.</summary>
    public LockLayout Layout { get; }

    /// <summary>The name of <paramref name="layout"/> as the command line and results write it: the enum name in kebab case.</summary>
    /// <param name="layout">A layout.</param>
    public static string Name(LockLayout layout)
    {
        string name = layout.ToString();
        var sb = new System.Text.StringBuilder(name.Length + 4);
        for (int i = 0; i < name.Length; i++)
        {
            if (i > 0 && char.IsUpper(name[i]))
            {
                sb.Append('-');
            }

            sb.Append(char.ToLowerInvariant(name[i]));
        }

        return sb.ToString();
    }

    /// <summary>The layout called <paramref name="name"/> (one of <see cref="Names"/>, case-insensitive), or null.</summary>
    /// <param name="name">A name.</param>
    public static LockLayout? TryParse(string name)
    {
        foreach (LockLayout layout in Enum.GetValues<LockLayout>())
        {
            if (string.Equals(Name(layout), name, StringComparison.OrdinalIgnoreCase))
            {
                return layout;
            }
        }

        return null;
    }

    /// <summary>The block's line-aligned base.</summary>
    public byte* Base { get; }

    /// <summary>The mmap lock's count word.</summary>
    public long* MmapCount { get; }

    /// <summary>The mm-wide page-table lock (Linux <c>mm-&gt;page_table_lock</c>).</summary>
    public PtLock* PageTableLock { get; }

    /// <summary>The pinned array behind the block (whoever holds a pointer into it holds this too).</summary>
    public object Storage => _storage;

    /// <summary>The simulator's name for the 64-byte line at <paramref name="p"/>, if it is one of this block's hot lines.</summary>
    /// <param name="p">Any address in the line.</param>
    public string? LineLabel(byte* p)
    {
        nint line = (nint)p >> 6;
        if (line == (nint)MmapCount >> 6)
        {
            return Layout == LockLayout.SharedLine ? "mmap_lock count + page_table_lock (one line)" : "mmap_lock count";
        }

        return line == (nint)PageTableLock >> 6 ? "page_table_lock" : null;
    }
}
