using System.Runtime.CompilerServices;
using SpecVm.Memory;
using SpecVm.Sync;

namespace SpecVm.Paging;

/// <summary>
/// A four-level page table (x86-64 PML4 → PUD → PMD → PTE, 512 entries a level, each level one frame) for 48-bit
/// user addresses below <see cref="UserTop"/>.
/// </summary>
/// <remarks>
/// <para>
/// Walks are lockless: each level is read with <see cref="Volatile.Read(ref readonly ulong)"/>. Missing upper levels
/// are allocated on demand and installed with a compare-and-swap, so two CPUs faulting in the same empty region
/// agree on one table (the loser frees its own, never-published frame). A PTE table is the unit of the split
/// page-table lock: its <see cref="PageFrame.Ptl"/>.
/// </para>
/// <para>
/// Installs are also serialised by the mm-wide page-table lock (Linux <c>mm-&gt;page_table_lock</c>, which
/// <c>__pud_alloc</c> and <c>__pmd_alloc</c> take, and <c>pmd_install</c> where split PMD locks are off): taken only
/// when a level is missing, so a walk that finds every level present never touches it. An address space places that
/// lock in its lock block (<c>Mm.LockLayout</c>); a table made with the public constructor has a lock of its own.
/// </para>
/// <para>
/// A detached table (<see cref="DetachTables"/>, <see cref="DetachPteTable"/>) is not freed here: the caller frees it only after a TLB shootdown
/// has been acknowledged by every CPU, which is what makes a lockless walk with interrupts disabled safe.
/// </para>
/// </remarks>
internal sealed unsafe class PageTable
{
    /// <summary>The first address above user space (2^47).</summary>
    public const ulong UserTop = 1UL << 47;

    /// <summary>Bytes covered by one PTE table (2 MiB).</summary>
    public const ulong PteTableSpan = 1UL << 21;

    private const ulong TableFlags = Pte.Present | Pte.Writable | Pte.User;

    /// <summary>The lock owner id a caller that is no CPU (cpu -1) takes the page-table lock as: no CPU has it.</summary>
    private const int NoCpuOwner = int.MaxValue - 1;

    private readonly PhysicalMemory _memory;
    private readonly FrameAllocator _allocator;

    /// <summary>The mm-wide page-table lock, in memory that never moves (fixed at construction).</summary>
    private readonly PtLock* _pageTableLock;

    /// <summary>Keeps the memory behind <see cref="_pageTableLock"/> alive (a pinned array).</summary>
    private readonly object _lockStorage;
    /// <summary>
    /// The root table's PFN; frame 0 once <see cref="FreeAll"/> ran. Frame 0 is never allocated and stays zero, so a
    /// walk of a freed table finds nothing mapped instead of reading frames that now belong to someone else.
    /// </summary>
    private long _root;
    private long _tables;

    /// <summary>Creates an empty table with its root level allocated.</summary>
    /// <param name="allocator">Where the table's frames come from.</param>
    /// <param name="cpu">The allocating CPU, or -1.</param>
    public PageTable(FrameAllocator allocator, int cpu)
        : this(allocator, cpu, null, null)
    {
    }

    /// <summary>Creates an empty table whose page-table lock is at <paramref name="pageTableLock"/> (an address space's lock block).</summary>
    /// <param name="allocator">Where the table's frames come from.</param>
    /// <param name="cpu">The allocating CPU, or -1.</param>
    /// <param name="pageTableLock">A zeroed lock in memory that never moves, or null for a lock of the table's own.</param>
    /// <param name="lockStorage">The pinned array that holds <paramref name="pageTableLock"/> (kept alive by the table).</param>
    internal PageTable(FrameAllocator allocator, int cpu, PtLock* pageTableLock, object? lockStorage)
    {
        ArgumentNullException.ThrowIfNull(allocator);
        if (pageTableLock == null)
        {
            // Alone on its line, in a pinned array (never moves, so the pointer stays valid while the table holds it).
            PaddedInt[] own = GC.AllocateArray<PaddedInt>(1, pinned: true);
            pageTableLock = (PtLock*)Unsafe.AsPointer(ref own[0].Value);
            lockStorage = own;
        }

        _pageTableLock = pageTableLock;
        _lockStorage = lockStorage ?? throw new ArgumentNullException(nameof(lockStorage));
        _allocator = allocator;
        _memory = allocator.Memory;
        _root = allocator.Allocate(cpu, FrameState.PageTable);
        InitTable(_root, 4, 0);
        _tables = 1;
    }

    /// <summary>The mm-wide page-table lock (for the layout tests and the invariant checker).</summary>
    internal ref PtLock PageTableLock => ref *_pageTableLock;

    /// <summary>The pinned array behind <see cref="PageTableLock"/>.</summary>
    internal object LockStorage => _lockStorage;

    /// <summary>The PFN of the root (PML4) table.</summary>
    public long Root => _root;

    /// <summary>Table pages this table owns (all levels).</summary>
    public long TablePages => Volatile.Read(ref _tables);

    /// <summary>True if <paramref name="va"/> is a canonical user address (below 2^47).</summary>
    /// <param name="va">The virtual address.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool IsUserAddress(ulong va) => va < UserTop;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int IndexAt(ulong va, int level) => (int)((va >> (PhysicalMemory.PageShift + (9 * (level - 1)))) & 511);

    /// <summary>
    /// Walks to the PTE of <paramref name="va"/> without locks. Returns null if a level is missing (the 2017
    /// speculative path aborts then: it never allocates tables).
    /// </summary>
    /// <param name="va">A user address.</param>
    /// <param name="ptePfn">The PFN of the PTE table (whose PTL guards the entry), or -1.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong* WalkLockless(ulong va, out long ptePfn)
    {
        long table = _root;
        for (int level = 4; level > 1; level--)
        {
            ulong* entry = Entries(table) + IndexAt(va, level);

            // Acquire (READ_ONCE): the lower table's contents, initialised before its CAS install, are visible.
            ulong value = Volatile.Read(ref *entry);
            if ((value & Pte.Present) == 0)
            {
                ptePfn = -1;
                return null;
            }

            table = new Pte(value).Pfn;
        }

        ptePfn = table;
        return Entries(table) + IndexAt(va, 1);
    }

    /// <summary>Walks to the PTE of <paramref name="va"/>, allocating missing levels. Returns null if out of frames.</summary>
    /// <param name="cpu">The faulting CPU (for its frame cache), or -1.</param>
    /// <param name="va">A user address.</param>
    /// <param name="ptePfn">The PFN of the PTE table, or -1.</param>
    public ulong* WalkAllocate(int cpu, ulong va, out long ptePfn) => WalkAllocate(cpu, null, va, out ptePfn);

    /// <summary>
    /// As <see cref="WalkAllocate(int, ulong, out long)"/>, serving <paramref name="waiter"/> (the faulting CPU: its
    /// interrupts) while it spins for the page-table lock to install a missing level.
    /// </summary>
    /// <param name="cpu">The faulting CPU, or -1.</param>
    /// <param name="waiter">Called each spin iteration on the page-table lock; may be null.</param>
    /// <param name="va">A user address.</param>
    /// <param name="ptePfn">The PFN of the PTE table, or -1.</param>
    internal ulong* WalkAllocate(int cpu, ISpinWaiter? waiter, ulong va, out long ptePfn)
    {
        long table = _root;
        if (table == 0)
        {
            // Freed (the address space was disposed): never install tables into the shared empty frame 0.
            ptePfn = -1;
            return null;
        }

        for (int level = 4; level > 1; level--)
        {
            ulong* entry = Entries(table) + IndexAt(va, level);

            // Acquire: see WalkLockless.
            ulong value = Volatile.Read(ref *entry);
            if ((value & Pte.Present) == 0)
            {
                long fresh = _allocator.TryAllocate(cpu, FrameState.PageTable);
                if (fresh < 0)
                {
                    ptePfn = -1;
                    return null;
                }

                InitTable(fresh, level - 1, va & ~((1UL << (PhysicalMemory.PageShift + (9 * (level - 1)))) - 1));

                // Under the mm-wide page-table lock, as Linux installs upper levels (the table is allocated and
                // cleared before, as __pte_alloc does). The lock serialises installers; the CAS still publishes, for
                // the lockless walkers, which never take the lock.
                // CAS (full fence): publishes the zeroed table and its metadata before the entry that points to it;
                // a lockless walker that sees the entry sees an initialised table. Losing the race means another CPU
                // installed a table first: use theirs and free ours, which nobody else has seen.
                ulong installed = Pte.Make(fresh, TableFlags).Value;
                int owner = cpu < 0 ? NoCpuOwner : cpu;
                ref PtLock pageTableLock = ref *_pageTableLock;
                pageTableLock.Lock(owner, waiter);
                ulong seen = Interlocked.CompareExchange(ref *entry, installed, value);
                pageTableLock.Unlock(owner);
                if (seen == value)
                {
                    Interlocked.Increment(ref _tables); // Statistics: CPUs may install tables at once.
                    value = installed;
                }
                else
                {
                    _allocator.Free(cpu, fresh);
                    value = seen;
                }
            }

            table = new Pte(value).Pfn;
        }

        ptePfn = table;
        return Entries(table) + IndexAt(va, 1);
    }

    /// <summary>
    /// Unhooks the PTE table covering the 2 MiB region at <paramref name="regionBase"/> from its PMD entry and returns
    /// its PFN (or -1 if there is none). The caller must free it only after an acknowledged TLB shootdown.
    /// </summary>
    /// <param name="regionBase">A 2 MiB-aligned user address.</param>
    public long DetachPteTable(ulong regionBase)
    {
        // One PTE table (level 1): the general detach, which validates the base and walks the same way.
        var detached = new List<long>(1);
        return DetachTables(regionBase, 1, detached) == 0 ? -1 : detached[0];
    }

    /// <summary>
    /// Unhooks the table of level <paramref name="level"/> (1 = PTE table, 2 = PMD, 3 = PUD) that covers the region at
    /// <paramref name="regionBase"/> from its parent entry, and adds it and every table still below it to
    /// <paramref name="into"/> (Linux <c>free_pgtables</c>). The caller holds the mmap lock for write, no VMA overlaps
    /// the region (so no fault can install a table in it), and frees the tables only after an acknowledged shootdown.
    /// </summary>
    /// <param name="regionBase">The region's base, aligned to the table's span.</param>
    /// <param name="level">1 to 3.</param>
    /// <param name="into">Where the detached tables' PFNs go.</param>
    /// <returns>How many tables were detached.</returns>
    public int DetachTables(ulong regionBase, int level, List<long> into)
    {
        ArgumentNullException.ThrowIfNull(into);
        if (level is < 1 or > 3)
        {
            throw new ArgumentOutOfRangeException(nameof(level), level, "Level must be 1 (PTE table), 2 (PMD) or 3 (PUD).");
        }

        ulong span = SpanOf(level);
        if ((regionBase & (span - 1)) != 0 || regionBase >= UserTop)
        {
            throw new ArgumentException($"Region base 0x{regionBase:x} is not a user address aligned to 0x{span:x}.", nameof(regionBase));
        }

        long table = _root;
        if (table == 0)
        {
            return 0; // Freed already.
        }

        for (int l = 4; l > level + 1; l--)
        {
            // Acquire (READ_ONCE), as in WalkLockless; under the mmap write lock no table on this path goes away.
            ulong value = Volatile.Read(ref *(Entries(table) + IndexAt(regionBase, l)));
            if ((value & Pte.Present) == 0)
            {
                return 0;
            }

            table = new Pte(value).Pfn;
        }

        // Exchange (full fence): walkers that start after this see no table; walkers already past this level are
        // why the frames wait for a shootdown before they are freed.
        ulong old = Interlocked.Exchange(ref *(Entries(table) + IndexAt(regionBase, level + 1)), 0);
        if ((old & Pte.Present) == 0)
        {
            return 0;
        }

        int before = into.Count;
        CollectTables(new Pte(old).Pfn, level, into);
        Interlocked.Add(ref _tables, -(into.Count - before)); // Statistics, as in WalkAllocate.
        return into.Count - before;
    }

    /// <summary>The bytes one table of <paramref name="level"/> covers (1: 2 MiB, 2: 1 GiB, 3: 512 GiB).</summary>
    /// <param name="level">1 to 3.</param>
    public static ulong SpanOf(int level) => 1UL << (PhysicalMemory.PageShift + (9 * level));

    /// <summary>Adds <paramref name="table"/> and every table below it (not the leaves' frames) to <paramref name="into"/>.</summary>
    private void CollectTables(long table, int level, List<long> into)
    {
        into.Add(table);
        if (level == 1)
        {
            return; // A PTE table's entries map data frames, which the zap released.
        }

        ulong* entries = Entries(table);
        for (int i = 0; i < 512; i++)
        {
            ulong value = Volatile.Read(ref entries[i]);
            if ((value & Pte.Present) != 0)
            {
                CollectTables(new Pte(value).Pfn, level - 1, into);
            }
        }
    }

    /// <summary>Frees every table page (the address space is being destroyed and no CPU can walk it).</summary>
    /// <param name="cpu">The freeing CPU, or -1.</param>
    /// <param name="onLeaf">Called for every present leaf PTE still found (so the caller can release its frame).</param>
    public void FreeAll(int cpu, Action<Pte>? onLeaf)
    {
        long root = _root;
        if (root == 0)
        {
            return; // Freed already.
        }

        // Release: a late walker (a misbehaving strategy) sees the empty frame 0 rather than a freed, reused table.
        Volatile.Write(ref _root, 0);
        FreeLevel(cpu, root, 4, onLeaf);
        _tables = 0;
    }

    private void FreeLevel(int cpu, long table, int level, Action<Pte>? onLeaf)
    {
        ulong* entries = Entries(table);
        for (int i = 0; i < 512; i++)
        {
            ulong value = entries[i];
            if ((value & Pte.Present) == 0)
            {
                continue;
            }

            if (level > 1)
            {
                FreeLevel(cpu, new Pte(value).Pfn, level - 1, onLeaf);
            }
            else
            {
                onLeaf?.Invoke(new Pte(value));
            }

            entries[i] = 0;
        }

        _allocator.Free(cpu, table);
    }

    /// <summary>Counts present leaf PTEs and calls <paramref name="visit"/> for each (checkers; not thread-safe with writers).</summary>
    /// <param name="visit">Called with each present PTE's virtual address and value.</param>
    public long ForEachPresent(Action<ulong, Pte> visit)
    {
        ArgumentNullException.ThrowIfNull(visit);
        return Visit(_root, 4, 0, visit);
    }

    private long Visit(long table, int level, ulong baseVa, Action<ulong, Pte> visit)
    {
        long count = 0;
        ulong* entries = Entries(table);
        for (int i = 0; i < 512; i++)
        {
            // Acquire (READ_ONCE): entries may be changing under other CPUs' PTLs; the visitor sees a consistent value.
            ulong value = Volatile.Read(ref entries[i]);
            if ((value & Pte.Present) == 0)
            {
                continue;
            }

            ulong va = baseVa | ((ulong)i << (PhysicalMemory.PageShift + (9 * (level - 1))));
            if (level > 1)
            {
                count += Visit(new Pte(value).Pfn, level - 1, va, visit);
            }
            else
            {
                visit(va, new Pte(value));
                count++;
            }
        }

        return count;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong* Entries(long pfn) => (ulong*)_memory.FrameDataUnchecked(pfn);

    private void InitTable(long pfn, int level, ulong baseVa)
    {
        Unsafe.InitBlockUnaligned(_memory.FrameDataUnchecked(pfn), 0, PhysicalMemory.PageSize);
        ref PageFrame frame = ref _memory.FrameUnchecked(pfn);
        frame.Owner = level;
        frame.Index = (long)baseVa;
        frame.Ptl = default;
    }
}
