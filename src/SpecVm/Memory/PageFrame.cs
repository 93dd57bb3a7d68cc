using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using SpecVm.Sync;

namespace SpecVm.Memory;

/// <summary>What a physical frame is being used for; every frame is in exactly one state (accounting must balance).</summary>
internal enum FrameState
{
    /// <summary>In the global pool or a per-CPU cache.</summary>
    Free = 0,

    /// <summary>Private anonymous (or copy-on-write) memory mapped by a PTE.</summary>
    Anonymous = 1,

    /// <summary>A page-table page (any of the four levels).</summary>
    PageTable = 2,

    /// <summary>A file's page-cache page (mapped or not).</summary>
    PageCache = 3,

    /// <summary>Unmapped and waiting for the TLB shootdown that makes it unreachable before it is freed.</summary>
    AwaitingFlush = 4,

    /// <summary>Allocated by a fault and prepared (zeroed/copied) but not yet installed in a PTE.</summary>
    Preparing = 5,

    /// <summary>
    /// The machine's shared zero page (Linux <c>empty_zero_page</c>): mapped read-only by anonymous read faults, any
    /// number of times, without a map count; allocated with the machine and never freed. Exactly one frame is in it.
    /// </summary>
    ZeroPage = 6,
}

/// <summary>
/// Metadata of one physical frame (Linux <c>struct page</c>): its state, map count, owner, and — for page-table pages —
/// the split page-table lock, kept here as Linux keeps <c>ptl</c> in <c>struct page</c>.
/// </summary>
/// <remarks>64 bytes, so a frame's PTL shares a 128-byte line with at most one neighbour's (as two struct pages do).</remarks>
[StructLayout(LayoutKind.Explicit, Size = 64)]
internal struct PageFrame
{
    /// <summary>The frame's current use.</summary>
    [FieldOffset(0)]
    public FrameState State;

    /// <summary>How many PTEs map this frame (Linux <c>_mapcount</c> + 1).</summary>
    [FieldOffset(4)]
    public int MapCount;

    /// <summary>The split page-table lock; meaningful only for PTE-table pages. Internal: see <see cref="PtLock"/> on why.</summary>
    [FieldOffset(8)]
    private PtLock _ptl;

    /// <summary>Flags (<see cref="PageFrameFlags"/>).</summary>
    [FieldOffset(12)]
    public int Flags;

    /// <summary>For page-cache pages: the owning file's id; for page tables: the level (1 = PTE table).</summary>
    [FieldOffset(16)]
    public long Owner;

    /// <summary>
    /// For page-cache pages: the page index in the file; for page tables: the base virtual address covered; for the head
    /// of a PMD-mapped huge page: the PFN of its deposited PTE table.
    /// </summary>
    [FieldOffset(24)]
    public long Index;

    /// <summary>
    /// For a PTE-table page: the CPUs that filled their TLB from it since it was allocated (targeted shootdowns send
    /// IPIs only to these; see <c>AddressSpaceOptions.TargetedShootdowns</c>). Bits are only added while the
    /// table lives; a new table starts empty.
    /// </summary>
    [FieldOffset(32)]
    public ulong TlbCpus;

    /// <summary>
    /// For an anonymous frame: where it stands with the LRU (<see cref="LruVec"/>'s states: not on it, in a CPU's add
    /// batch, on the list, or freed while still in an add batch). Changed by CAS; internal, as the protocol is LruVec's.
    /// </summary>
    [FieldOffset(40)]
    private int _lruState;

    /// <summary>The split page-table lock, by reference (never a copy: a copied lock excludes nobody).</summary>
    [UnscopedRef]
    internal ref PtLock Ptl
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => ref _ptl;
    }

    /// <summary>The LRU state (<see cref="_lruState"/>), by reference, for <see cref="LruVec"/>'s CASes.</summary>
    [UnscopedRef]
    internal ref int LruState
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => ref _lruState;
    }

    /// <summary>Reads <see cref="State"/> with acquire semantics.</summary>
    public readonly FrameState ReadState() => (FrameState)Volatile.Read(in Unsafe.As<FrameState, int>(ref Unsafe.AsRef(in State)));

    /// <summary>Writes <see cref="State"/> with release semantics: metadata written before it is visible first.</summary>
    /// <param name="state">The new state.</param>
    public void WriteState(FrameState state) => Volatile.Write(ref Unsafe.As<FrameState, int>(ref State), (int)state);
}

/// <summary>Bits of <see cref="PageFrame.Flags"/>.</summary>
[Flags]
internal enum PageFrameFlags
{
    /// <summary>No flags.</summary>
    None = 0,

    /// <summary>Written through a shared mapping since it was read in (Linux <c>PG_dirty</c>).</summary>
    Dirty = 1,

    /// <summary>
    /// The first frame of a 2 MiB transparent huge page (Linux <c>PG_head</c>): 512 contiguous frames from a 2 MiB-aligned
    /// PFN, allocated and freed as one. While it is mapped by a PMD, its <see cref="PageFrame.Index"/> holds the PFN of
    /// the PTE table deposited for a later split (Linux <c>pgtable_trans_huge_deposit</c>).
    /// </summary>
    CompoundHead = 2,

    /// <summary>One of the 511 frames after a <see cref="CompoundHead"/> (Linux's tail pages).</summary>
    CompoundTail = 4,
}
