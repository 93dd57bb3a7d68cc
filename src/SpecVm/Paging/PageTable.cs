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
/// A PMD entry with <see cref="Pte.Huge"/> is a leaf mapping a 2 MiB page (a transparent huge page, Linux
/// <c>pmd_trans_huge</c>). It is guarded by the PMD table's own split lock (its <see cref="PageFrame.Ptl"/>: Linux's
/// <c>pmd_lock</c> with split PMD locks), installed by a compare-and-swap from empty (so it cannot overwrite a PTE table
/// installed meanwhile without that lock), and carries a PTE table deposited when it was made
/// (<see cref="Deposit"/>, Linux <c>pgtable_trans_huge_deposit</c>), so that splitting it (<see cref="SplitHuge"/>)
/// never allocates. Lockless walkers stop at a huge PMD (<see cref="WalkLocklessLeaf"/>); the walks that only know
/// PTEs (<see cref="WalkLockless(ulong, out long)"/>, <see cref="WalkAllocate(int, ulong, out long)"/>) return null there.
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

    /// <summary>Bytes covered by one PTE table (2 MiB), which is also the size of a huge page mapped by one PMD entry.</summary>
    public const ulong PteTableSpan = 1UL << 21;

    /// <summary>4 KiB pages in a huge page (Linux <c>HPAGE_PMD_NR</c>).</summary>
    internal const int HugePages = 512;

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
    /// speculative path aborts then: it never allocates tables) or the PMD maps a huge page (see
    /// <see cref="WalkLocklessLeaf"/> for walkers that handle one).
    /// </summary>
    /// <param name="va">A user address.</param>
    /// <param name="ptePfn">The PFN of the PTE table (whose PTL guards the entry), or -1.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong* WalkLockless(ulong va, out long ptePfn)
    {
        ulong* entry = WalkLocklessLeaf(va, out ptePfn, out bool huge);
        if (huge)
        {
            ptePfn = -1;
            return null;
        }

        return entry;
    }

    /// <summary>
    /// Walks to the leaf entry of <paramref name="va"/> without locks: its PTE, or — <paramref name="huge"/> true — the
    /// PMD entry when that maps a 2 MiB page. Null (table -1) if a level is missing. The caller rereads the entry; a PMD
    /// entry read again may have been split or zapped since (no longer <see cref="Pte.Huge"/>): walk again then.
    /// </summary>
    /// <param name="va">A user address.</param>
    /// <param name="tablePfn">The PFN of the table holding the leaf (a PTE table, or for a huge page the PMD table), whose PTL guards it; or -1.</param>
    /// <param name="huge">True if the leaf is a PMD entry mapping a huge page.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ulong* WalkLocklessLeaf(ulong va, out long tablePfn, out bool huge)
    {
        long table = _root;
        for (int level = 4; level > 1; level--)
        {
            ulong* entry = Entries(table) + IndexAt(va, level);

            // Acquire (READ_ONCE): the lower table's contents, initialised before its CAS install, are visible.
            ulong value = Volatile.Read(ref *entry);

            // One compare for both rare cases: a missing level, or a PS leaf (only PMD entries ever have PS set).
            if ((value & (Pte.Present | Pte.Huge)) != Pte.Present)
            {
                huge = (value & Pte.Present) != 0;
                tablePfn = huge ? table : -1;
                return huge ? entry : null;
            }

            table = new Pte(value).Pfn;
        }

        huge = false;
        tablePfn = table;
        return Entries(table) + IndexAt(va, 1);
    }

    /// <summary>
    /// Walks to the PMD entry of <paramref name="va"/> without locks (null, table -1, if the PML4 or PUD level is missing).
    /// Under the mmap lock the upper tables on the way cannot be freed.
    /// </summary>
    /// <param name="va">A user address.</param>
    /// <param name="pmdTablePfn">The PFN of the PMD table (whose PTL guards a huge entry), or -1.</param>
    internal ulong* PmdEntry(ulong va, out long pmdTablePfn)
    {
        long table = _root;
        for (int level = 4; level > 2; level--)
        {
            // Acquire (READ_ONCE), as in WalkLocklessLeaf.
            ulong value = Volatile.Read(ref *(Entries(table) + IndexAt(va, level)));
            if ((value & Pte.Present) == 0)
            {
                pmdTablePfn = -1;
                return null;
            }

            table = new Pte(value).Pfn;
        }

        pmdTablePfn = table;
        return Entries(table) + IndexAt(va, 2);
    }

    /// <summary>
    /// Walks to the PTE of <paramref name="va"/>, allocating missing levels. Returns null if out of frames, or if the PMD
    /// maps a huge page.
    /// </summary>
    /// <param name="cpu">The faulting CPU (for its frame cache), or -1.</param>
    /// <param name="va">A user address.</param>
    /// <param name="ptePfn">The PFN of the PTE table, or -1.</param>
    public ulong* WalkAllocate(int cpu, ulong va, out long ptePfn) => WalkAllocate(cpu, null, va, 1, out ptePfn, out _);

    /// <summary>
    /// Walks to the entry of level <paramref name="leafLevel"/> (1: the PTE; 2: the PMD entry, allocating no PTE table)
    /// for <paramref name="va"/>, allocating the missing levels above it, serving <paramref name="waiter"/> (the faulting
    /// CPU: its interrupts) while it spins for the page-table lock to install a missing level. Null if out of frames (or
    /// freed); walking to a PTE, null with <paramref name="huge"/> true and the PMD table in <paramref name="tablePfn"/>
    /// if the PMD maps a huge page.
    /// </summary>
    /// <param name="cpu">The faulting CPU (for its frame cache), or -1.</param>
    /// <param name="waiter">Called each spin iteration on the page-table lock; may be null.</param>
    /// <param name="va">A user address.</param>
    /// <param name="leafLevel">1 or 2.</param>
    /// <param name="tablePfn">The PFN of the table holding the entry returned, or -1.</param>
    /// <param name="huge">True if the walk stopped at a PMD entry mapping a huge page.</param>
    internal ulong* WalkAllocate(int cpu, ISpinWaiter? waiter, ulong va, int leafLevel, out long tablePfn, out bool huge)
    {
        long table = _root;
        huge = false;
        if (table == 0)
        {
            // Freed (the address space was disposed): never install tables into the shared empty frame 0.
            tablePfn = -1;
            return null;
        }

        for (int level = 4; level > leafLevel; level--)
        {
            ulong* entry = Entries(table) + IndexAt(va, level);

            // Acquire: see WalkLockless.
            ulong value = Volatile.Read(ref *entry);
            if ((value & Pte.Huge) != 0)
            {
                // A huge page (only PMD entries have PS): there is no PTE table to walk into.
                huge = true;
                tablePfn = table;
                return null;
            }

            if ((value & Pte.Present) == 0)
            {
                long fresh = _allocator.TryAllocate(cpu, FrameState.PageTable);
                if (fresh < 0)
                {
                    tablePfn = -1;
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
                    if ((value & Pte.Huge) != 0)
                    {
                        huge = true; // A huge fault installed its PMD first (it too installs with a CAS from empty).
                        tablePfn = table;
                        return null;
                    }
                }
            }

            table = new Pte(value).Pfn;
        }

        tablePfn = table;
        return Entries(table) + IndexAt(va, leafLevel);
    }

    /// <summary>
    /// Makes <paramref name="pfn"/>, a fresh <see cref="FrameState.PageTable"/> frame, the PTE table deposited with a huge
    /// page about to be mapped at <paramref name="regionBase"/> (Linux <c>pgtable_trans_huge_deposit</c>, counted in
    /// <c>nr_ptes</c> as Linux counts it): zeroed and owned by this table, reachable by no walker until a split
    /// publishes it. Withdraw it with <see cref="Withdraw"/> when the huge page goes away unsplit.
    /// </summary>
    internal void Deposit(long pfn, ulong regionBase)
    {
        InitTable(pfn, 1, regionBase);
        Interlocked.Increment(ref _tables); // Statistics, as in WalkAllocate.
    }

    /// <summary>Gives back a deposited table that no split used (Linux <c>zap_deposited_table</c>); the caller frees the frame.</summary>
    internal void Withdraw() => Interlocked.Decrement(ref _tables); // Statistics, as in WalkAllocate.

    /// <summary>
    /// Installs the huge-page leaf <paramref name="value"/> in the empty PMD entry <paramref name="pmd"/> with a
    /// compare-and-swap (full fence: the zeroed page, its metadata and its deposit are visible before the entry); false
    /// if the entry is no longer empty (a PTE table or another huge page got there first). The caller holds the PMD lock.
    /// </summary>
    internal static bool TryInstallHuge(ulong* pmd, ulong value) =>
        Interlocked.CompareExchange(ref *pmd, value, 0UL) == 0UL;

    /// <summary>
    /// Replaces the huge-page leaf <paramref name="huge"/> at <paramref name="pmd"/> by its deposited PTE table, filled
    /// with 512 PTEs mapping the same frames with the same rights (Linux <c>__split_huge_pmd_locked</c>). The caller
    /// holds the PMD lock, has checked the entry still holds <paramref name="huge"/>, and shoots down the range after.
    /// With <paramref name="plantDropFirst"/> (a planted bug for tests) the first PTE is left empty.
    /// </summary>
    /// <returns>The PFN of the PTE table now in the PMD entry.</returns>
    internal long SplitHuge(ulong* pmd, long pmdTablePfn, ulong huge, ulong regionBase, long deposit, bool plantDropFirst = false)
    {
        InitTable(deposit, 1, regionBase);
        ulong* ptes = Entries(deposit);
        ulong flags = huge & ~(Pte.PfnMask | Pte.Huge);
        long head = new Pte(huge).Pfn;
        for (int i = plantDropFirst ? 1 : 0; i < HugePages; i++)
        {
            ptes[i] = ((ulong)(head + i) << PhysicalMemory.PageShift) | flags;
        }

        // Targeted shootdowns: CPUs that cached subpages from the huge entry noted themselves on the PMD table; the new
        // table inherits them, so a later shootdown of its range still interrupts them.
        ref PageFrame pmdTable = ref _memory.FrameUnchecked(pmdTablePfn);
        _memory.FrameUnchecked(deposit).TlbCpus = Volatile.Read(ref pmdTable.TlbCpus);

        // Release: the filled table (and its metadata) is visible before the entry that points at it; a lockless walker
        // sees the huge leaf or the full table, never a half-filled one.
        VirtualTime.Access(pmd, LineAccess.Store);
        Volatile.Write(ref *pmd, Pte.Make(deposit, TableFlags).Value);
        return deposit;
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

        // A huge page is a leaf, not a table: never detach one as a table (its region's zap removes it; one still here
        // is a bug the invariant checker reports, a huge PMD outside every VMA, rather than frames freed as tables).
        ulong* slot = Entries(table) + IndexAt(regionBase, level + 1);
        if ((Volatile.Read(ref *slot) & Pte.Huge) != 0)
        {
            return 0;
        }

        // Exchange (full fence): walkers that start after this see no table; walkers already past this level are
        // why the frames wait for a shootdown before they are freed.
        ulong old = Interlocked.Exchange(ref *slot, 0);
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

            // A huge leaf is a page, not a table (a region no VMA overlaps has none: its zap cleared them).
            if ((value & (Pte.Present | Pte.Huge)) == Pte.Present)
            {
                CollectTables(new Pte(value).Pfn, level - 1, into);
            }
        }
    }

    /// <summary>Frees every table page (the address space is being destroyed and no CPU can walk it).</summary>
    /// <param name="cpu">The freeing CPU, or -1.</param>
    /// <param name="onLeaf">
    /// Called for every present leaf still found (so the caller can release its frame): each PTE, and each PMD entry that
    /// maps a huge page (<see cref="Pte.IsHuge"/>; its deposited table is freed here).
    /// </param>
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

            if (level > 1 && (value & Pte.Huge) == 0)
            {
                FreeLevel(cpu, new Pte(value).Pfn, level - 1, onLeaf);
            }
            else
            {
                if ((value & Pte.Huge) != 0)
                {
                    // The deposit first: the callback may free the huge page, and with it the head's record of it.
                    _allocator.Free(cpu, _memory.FrameUnchecked(new Pte(value).Pfn).Index);
                }

                onLeaf?.Invoke(new Pte(value));
            }

            entries[i] = 0;
        }

        _allocator.Free(cpu, table);
    }

    /// <summary>
    /// Counts present leaf PTEs and calls <paramref name="visit"/> for each (checkers; not thread-safe with writers). A
    /// PMD entry mapping a huge page counts as its 512 subpages, each visited with the 4 KiB PTE it stands for (the
    /// subpage's frame, the entry's rights).
    /// </summary>
    /// <param name="visit">Called with each present PTE's virtual address and value.</param>
    public long ForEachPresent(Action<ulong, Pte> visit)
    {
        ArgumentNullException.ThrowIfNull(visit);
        return Visit(_root, 4, 0, visit, null);
    }

    /// <summary>Calls <paramref name="visit"/> for each PMD entry that maps a huge page, with its address and value (checkers).</summary>
    /// <param name="visit">Called with each huge page's virtual address and PMD entry.</param>
    internal long ForEachHuge(Action<ulong, Pte> visit)
    {
        ArgumentNullException.ThrowIfNull(visit);
        return Visit(_root, 4, 0, null, visit);
    }

    /// <summary>The 4 KiB PTE that subpage <paramref name="index"/> (0..511) of the huge leaf <paramref name="pmd"/> stands for.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ulong Subpage(ulong pmd, ulong index) => (pmd & ~Pte.Huge) + (index << PhysicalMemory.PageShift);

    private long Visit(long table, int level, ulong baseVa, Action<ulong, Pte>? visit, Action<ulong, Pte>? visitHuge)
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
            if ((value & Pte.Huge) != 0)
            {
                visitHuge?.Invoke(va, new Pte(value));
                for (ulong sub = 0; visit != null && sub < HugePages; sub++)
                {
                    visit(va + (sub << PhysicalMemory.PageShift), new Pte(Subpage(value, sub)));
                }

                count += visit != null ? HugePages : 1;
            }
            else if (level > 1)
            {
                count += Visit(new Pte(value).Pfn, level - 1, va, visit, visitHuge);
            }
            else if (visit != null)
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
