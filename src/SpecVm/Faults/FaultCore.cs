using System.Runtime.CompilerServices;
using SpecVm.Memory;
using SpecVm.Mm;
using SpecVm.Paging;
using SpecVm.Smp;
using SpecVm.Sync;

namespace SpecVm.Faults;

/// <summary>
/// A frame made ready for a fault before any lock is taken (Linux prepares the page outside the PTL too): made by
/// <see cref="FaultCore.Prepare(Cpu, AddressSpace, Vma, ulong, bool, out PreparedPage)"/>, then either installed
/// (<see cref="FaultCore.Install(Cpu, AddressSpace, ref PreparedPage, PteSlot, ulong)"/>) or given back
/// (<see cref="FaultCore.Abandon"/>). Opaque to strategies: what it holds is the library's.
/// </summary>
public struct PreparedPage
{
    /// <summary>The frame to map.</summary>
    internal long Pfn { get; set; }

    /// <summary>PTE flag bits (without the PFN).</summary>
    internal ulong Flags { get; set; }

    /// <summary>True if <see cref="Pfn"/> is a fresh frame owned by this fault (freed if the fault is abandoned).</summary>
    internal bool Fresh { get; set; }

    /// <summary>True if the frame is a page-cache page that becomes dirty when mapped.</summary>
    internal bool DirtiesPageCache { get; set; }

    /// <summary>
    /// True if <see cref="Pfn"/> is the machine's shared zero page, mapped by a special PTE (Linux <c>pte_mkspecial</c>):
    /// its map count is not touched, and it is never freed.
    /// </summary>
    internal bool Special { get; set; }

    /// <summary>The counter of the fault kind.</summary>
    internal CpuCounter Kind { get; set; }
}

/// <summary>
/// The work every fault strategy shares: prepare a frame (zero, copy from the page cache, or find the page-cache page),
/// install it under the PTL after rechecking the PTE, and resolve faults on present PTEs (copy-on-write, write-enable,
/// re-enable). Public so that a custom strategy in one file can use it.
/// </summary>
/// <remarks>
/// <para>
/// Under a lock that keeps the VMA stable, one call does the whole fault: <see cref="HandleStable"/> with the mmap lock
/// held (<see cref="AddressSpace.MmapReadLock"/>), <see cref="HandleUnderVmaLock"/> with the VMA read-locked
/// (<see cref="Vma.TryReadLock(AddressSpace)"/>). A strategy that validates instead of locking (the speculative ones)
/// uses the pieces: <see cref="Prepare(Cpu, AddressSpace, Vma, ulong, bool, out PreparedPage)"/> outside any lock,
/// <see cref="WalkLockless"/> with interrupts disabled, the PTL through the <see cref="PteSlot"/>, a recheck of what it
/// read (<see cref="Vma.ReadRetryAfterFence"/>, <see cref="AddressSpace.MmapLockSpeculateRetry"/>), then
/// <see cref="Install(Cpu, AddressSpace, ref PreparedPage, PteSlot, ulong)"/>, or <see cref="Abandon"/> when it gives
/// up.
/// </para>
/// </remarks>
public static unsafe partial class FaultCore
{
    /// <summary>The PTE flags a page of <paramref name="vma"/> gets, for a frame in state <paramref name="frameState"/>.</summary>
    /// <param name="vma">The VMA.</param>
    /// <param name="frameState">The frame's state once mapped (<see cref="FrameState.Anonymous"/> or <see cref="FrameState.PageCache"/>).</param>
    internal static ulong PteFlagsFor(Vma vma, FrameState frameState) => PteRights.For(vma, frameState);

    /// <summary>
    /// Handles a fault with a VMA that cannot change under the caller, holding the mmap lock (for read at least):
    /// checks access, allocates missing page tables, prepares the frame, and installs it under the PTL. A fault that maps
    /// a private anonymous page gives the VMA its <c>anon_vma</c> first (<see cref="Vma.HasAnonVma"/>).
    /// </summary>
    /// <param name="cpu">The faulting CPU.</param>
    /// <param name="mm">The address space.</param>
    /// <param name="vma">The VMA containing <paramref name="address"/>.</param>
    /// <param name="address">The faulting address.</param>
    /// <param name="write">True for a write.</param>
    public static FaultResult HandleStable(Cpu cpu, AddressSpace mm, Vma vma, ulong address, bool write) =>
        Handle(cpu, mm, vma, address, write, vmaLocked: false);

    /// <summary>
    /// Handles a fault with <paramref name="vma"/> read-locked and no mmap lock (Linux <c>FAULT_FLAG_VMA_LOCK</c>): as
    /// <see cref="HandleStable"/>, but a fault that the address space's <see cref="PerVmaLockScope"/> does not finish
    /// under the VMA lock returns <see cref="FaultResult.Retry"/> having changed nothing but page tables (Linux
    /// <c>VM_FAULT_RETRY</c>), for the caller to release the VMA lock and retry under the mmap lock.
    /// </summary>
    /// <param name="cpu">The faulting CPU.</param>
    /// <param name="mm">The address space.</param>
    /// <param name="vma">The VMA containing <paramref name="address"/>, read-locked by the caller (<see cref="Vma.TryReadLock(AddressSpace)"/>).</param>
    /// <param name="address">The faulting address.</param>
    /// <param name="write">True for a write.</param>
    /// <returns>The result; <see cref="FaultResult.Retry"/> to retry under the mmap lock.</returns>
    public static FaultResult HandleUnderVmaLock(Cpu cpu, AddressSpace mm, Vma vma, ulong address, bool write) =>
        Handle(cpu, mm, vma, address, write, vmaLocked: true);

    private static FaultResult Handle(Cpu cpu, AddressSpace mm, Vma vma, ulong address, bool write, bool vmaLocked)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        ArgumentNullException.ThrowIfNull(mm);
        ArgumentNullException.ThrowIfNull(vma);
        if (!vma.Allows(write))
        {
            return FaultResult.SegmentationFault;
        }

        // Linux's __handle_mm_fault: the PMD first (a huge page there, or an empty one where a huge page may go), then
        // the PTE. Only with huge pages on: otherwise no PMD is ever huge and the walk below goes straight to the PTE.
        if (mm.ThpAlways && HandleHugePmd(cpu, mm, vma, address, write, vmaLocked) is FaultResult huge)
        {
            return huge;
        }

        ulong* entry = mm.PageTable.WalkAllocate(cpu.Id, cpu, address, 1, out long ptePfn, out bool raced);
        if (entry == null)
        {
            // A huge page was installed since HandleHugePmd looked (another CPU's fault): retry the access.
            return raced ? FaultResult.Handled : FaultResult.OutOfMemory;
        }

        // Acquire: see the frame state of whatever the entry maps.
        ulong pte = Volatile.Read(ref *entry);
        if ((pte & Pte.Present) != 0)
        {
            return FixPresent(cpu, mm, vma, address, write, entry, ptePfn, pte, vmaLocked);
        }

        bool needsAnonVma = NeedsAnonVma(mm, vma, write);
        if (vmaLocked)
        {
            if (MustRetryNotPresent(mm, vma, address, write, needsAnonVma))
            {
                return FaultResult.Retry;
            }
        }
        else if (needsAnonVma)
        {
            vma.PrepareAnonVma(); // anon_vma_prepare, under the mmap lock as Linux requires.
        }

        FaultResult prepared = Prepare(cpu, mm, vma, address, write, out PreparedPage page);
        if (prepared != FaultResult.Handled)
        {
            return prepared;
        }

        ref PageFrame table = ref mm.Machine.Memory.Frame(ptePfn);
        cpu.LockPtl(ref table.Ptl);
        bool installed;
        try
        {
            installed = Install(cpu, mm, ref page, entry, pte);
        }
        finally
        {
            table.Ptl.Unlock(cpu.Id);
        }

        if (!installed)
        {
            Abandon(cpu, mm, ref page);
            cpu.Count(CpuCounter.FaultRaced);
        }

        return FaultResult.Handled;
    }

    /// <summary>
    /// True if a not-present fault maps a private anonymous page, which needs the VMA's <c>anon_vma</c>: an anonymous
    /// write, an anonymous read without the zero page, a private-file write (<c>do_cow_fault</c>). A zero-page read
    /// and page-cache mappings need none (Linux calls <c>anon_vma_prepare</c> after the zero-page branch).
    /// </summary>
    private static bool NeedsAnonVma(AddressSpace mm, Vma vma, bool write) => vma.Kind switch
    {
        MappingKind.Anonymous => write || !mm.UseZeroPage,
        MappingKind.PrivateFile => write,
        _ => false,
    };

    /// <summary>
    /// Under the VMA lock: true if the scope sends this not-present fault back to the mmap lock (Linux returns
    /// <c>VM_FAULT_RETRY</c> before changing anything). Versions per <see cref="PerVmaLockScope"/>.
    /// </summary>
    private static bool MustRetryNotPresent(AddressSpace mm, Vma vma, ulong address, bool write, bool needsAnonVma)
    {
        if (vma.Kind == MappingKind.Anonymous)
        {
            // 6.10+ vmf_anon_prepare in do_anonymous_page; earlier scopes refused the VMA in lock_vma_under_rcu already.
            return needsAnonVma && !vma.HasAnonVma;
        }

        if (mm.VmaLockScope <= PerVmaLockScope.FileRetry)
        {
            // 6.6: do_cow_fault and do_shared_fault return VM_FAULT_RETRY at once under FAULT_FLAG_VMA_LOCK;
            // do_read_fault maps the page under the VMA lock only if do_fault_around finds it in the page cache, and
            // otherwise retries rather than call ->fault.
            return write || !vma.File!.IsCached(vma.FilePageOf(address));
        }

        // 6.7+: vmf_can_call_fault passes (page-cache files have map_pages); do_cow_fault's vmf_anon_prepare retries
        // without an anon_vma.
        return needsAnonVma && !vma.HasAnonVma;
    }

    /// <summary>Prepares the frame for a not-present fault outside any lock.</summary>
    /// <param name="cpu">The faulting CPU.</param>
    /// <param name="vma">The VMA.</param>
    /// <param name="address">The faulting address.</param>
    /// <param name="write">True for a write.</param>
    /// <param name="page">The prepared page.</param>
    public static FaultResult Prepare(Cpu cpu, Vma vma, ulong address, bool write, out PreparedPage page)
    {
        ArgumentNullException.ThrowIfNull(vma);
        AddressSpace mm = vma.AddressSpace ?? throw new ArgumentException("The VMA belongs to no address space (retired).", nameof(vma));
        return Prepare(cpu, mm, vma, address, write, out page);
    }

    /// <summary>
    /// Prepares the frame for a not-present fault in <paramref name="vma"/> of <paramref name="mm"/> outside any lock
    /// (Linux allocates and zeroes or copies the page before it takes the PTL): a fresh zeroed frame for an anonymous
    /// page (the shared zero page for a read, when <see cref="AddressSpaceOptions.UseZeroPage"/>), the page-cache page
    /// of a file page, or a private copy of it for a write to a private file mapping.
    /// </summary>
    /// <param name="cpu">The faulting CPU.</param>
    /// <param name="mm">The address space.</param>
    /// <param name="vma">The VMA (as read locklessly: the caller rechecks before installing).</param>
    /// <param name="address">The faulting address.</param>
    /// <param name="write">True for a write.</param>
    /// <param name="page">The prepared page, to install or abandon.</param>
    /// <returns><see cref="FaultResult.Handled"/> when prepared; <see cref="FaultResult.OutOfMemory"/> otherwise.</returns>
    public static FaultResult Prepare(Cpu cpu, AddressSpace mm, Vma vma, ulong address, bool write, out PreparedPage page)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        ArgumentNullException.ThrowIfNull(vma);
        page = default;
        PhysicalMemory memory = cpu.Machine.Memory;
        switch (vma.Kind)
        {
            case MappingKind.Anonymous when !write && mm.UseZeroPage:
            {
                // do_anonymous_page's zero-page branch: map the shared zero page read-only; nothing to allocate or
                // zero (the frame was zeroed when the machine was built and no PTE ever maps it writable).
                page.Pfn = cpu.Machine.ZeroPfn;
                page.Special = true;
                page.Flags = PteFlagsFor(vma, FrameState.ZeroPage);
                page.Kind = CpuCounter.FaultAnonRead;
                return FaultResult.Handled;
            }

            case MappingKind.Anonymous:
            {
                long pfn = AllocateUserPage(cpu);
                if (pfn < 0)
                {
                    return FaultResult.OutOfMemory;
                }

                PageKernels.Clear(memory.FrameDataUnchecked(pfn));
                cpu.Count(CpuCounter.PagesZeroed);
                page.Pfn = pfn;
                page.Fresh = true;
                page.Flags = PteFlagsFor(vma, FrameState.Anonymous);
                page.Kind = write ? CpuCounter.FaultAnonWrite : CpuCounter.FaultAnonRead;
                return FaultResult.Handled;
            }

            case MappingKind.PrivateFile:
            {
                long cached = vma.File!.GetPage(cpu.Id, vma.FilePageOf(address));
                if (cached < 0)
                {
                    return FaultResult.OutOfMemory;
                }

                if (!write)
                {
                    page.Pfn = cached;
                    page.Flags = PteFlagsFor(vma, FrameState.PageCache);
                    page.Kind = CpuCounter.FaultFileRead;
                    return FaultResult.Handled;
                }

                long pfn = AllocateUserPage(cpu);
                if (pfn < 0)
                {
                    return FaultResult.OutOfMemory;
                }

                PageKernels.Copy(memory.FrameDataUnchecked(cached), memory.FrameDataUnchecked(pfn));
                cpu.Count(CpuCounter.PagesCopied);
                page.Pfn = pfn;
                page.Fresh = true;
                page.Flags = PteFlagsFor(vma, FrameState.Anonymous);
                page.Kind = CpuCounter.FaultFileWrite;
                return FaultResult.Handled;
            }

            default:
            {
                long cached = vma.File!.GetPage(cpu.Id, vma.FilePageOf(address));
                if (cached < 0)
                {
                    return FaultResult.OutOfMemory;
                }

                page.Pfn = cached;

                // Write-notify (Linux vma_wants_writenotify): a read fault maps the shared page read-only and clean,
                // so the first write faults (FixPresent) and marks it dirty; PTE dirty bits then say exactly which
                // pages were written, which the zap's forced flush for dirty page-cache pages relies on.
                page.Flags = PteFlagsFor(vma, FrameState.PageCache) & (write ? ~0UL : ~Pte.Writable);
                page.DirtiesPageCache = write;
                page.Kind = write ? CpuCounter.FaultSharedWrite : CpuCounter.FaultSharedRead;
                return FaultResult.Handled;
            }
        }
    }

    /// <summary>
    /// Installs a prepared page if the PTE still holds <paramref name="expected"/>. The caller holds the PTE table's PTL.
    /// Returns false (nothing changed) if another CPU got there first.
    /// </summary>
    /// <param name="cpu">The faulting CPU.</param>
    /// <param name="mm">The address space.</param>
    /// <param name="page">The prepared page.</param>
    /// <param name="entry">The PTE slot.</param>
    /// <param name="expected">The PTE value seen by the walk.</param>
    internal static bool Install(Cpu cpu, AddressSpace mm, ref PreparedPage page, ulong* entry, ulong expected)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        ArgumentNullException.ThrowIfNull(mm);
        if (*entry != expected)
        {
            return false;
        }

        ref PageFrame frame = ref mm.Machine.Memory.Frame(page.Pfn);
        if (page.Special)
        {
            // The zero page: no map count (Linux does not count its mappings; a shared line every CPU would write).
        }
        else if (page.Fresh)
        {
            frame.MapCount = 1;
            frame.WriteState(FrameState.Anonymous);

            // Under the PTL and before the PTE store, as Linux's do_anonymous_page calls folio_add_lru_vma: a CPU that
            // can reach the page to free it (through this PTE, under this PTL) finds it in an LRU batch.
            cpu.Machine.Lru.Add(cpu.Id, page.Pfn);
        }
        else
        {
            // Atomic: a page-cache page is mapped by other address spaces under their own PTLs, so our PTL does not
            // serialize its map count; the PTE store below (release) publishes the new count with the mapping.
            Interlocked.Increment(ref frame.MapCount);
            if (page.DirtiesPageCache)
            {
                frame.Flags |= (int)PageFrameFlags.Dirty;
            }
        }

        ulong flags = page.Flags | Pte.Present | Pte.Accessed | ((page.Flags & Pte.Writable) != 0 && page.Kind != CpuCounter.FaultAnonRead ? Pte.Dirty : 0);

        // Release: the frame's zeroed or copied contents, and its metadata, are visible before the PTE that maps it;
        // a CPU that walks to this entry and accesses the page sees the prepared data, never stale bytes.
        VirtualTime.Access(entry, LineAccess.Store);
        Volatile.Write(ref *entry, Pte.Make(page.Pfn, flags).Value);
        cpu.Count(page.Kind);
        if (page.Special)
        {
            cpu.Count(CpuCounter.FaultZeroPage);
        }

        page.Fresh = false;
        return true;
    }

    /// <summary>
    /// Installs a prepared page in the entry <paramref name="pte"/> if it still holds <paramref name="expected"/> (Linux
    /// <c>set_pte_at</c> after the <c>pte_same</c> recheck). The caller holds the entry's PTL
    /// (<see cref="PteSlot.TryLock"/> or <see cref="PteSlot.Lock"/>) and has rechecked, after taking it, that the VMA it
    /// prepared for is unchanged. Returns false, changing nothing, if another CPU changed the entry first: the fault is
    /// then done or must be retried, and the page must be <see cref="Abandon"/>ed.
    /// </summary>
    /// <param name="cpu">The faulting CPU.</param>
    /// <param name="mm">The address space.</param>
    /// <param name="page">The prepared page; installed pages are no longer the fault's to abandon.</param>
    /// <param name="pte">The entry, from <see cref="WalkLockless"/>.</param>
    /// <param name="expected">The value <see cref="PteSlot.Read"/> returned before the page was prepared.</param>
    /// <returns>True if installed.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Install(Cpu cpu, AddressSpace mm, ref PreparedPage page, PteSlot pte, ulong expected) =>
        Install(cpu, mm, ref page, pte.Entry, expected);

    /// <summary>
    /// Walks the page table of <paramref name="mm"/> to the entry of <paramref name="address"/> without locks and without
    /// allocating (the 2017 speculative fault's walk, as <c>gup_fast</c>): a slot without a table
    /// (<see cref="PteSlot.HasTable"/> false) when a level is missing, or when the PMD maps a 2 MiB page
    /// (<see cref="PteSlot.IsHuge"/>; transparent huge pages, which the published speculative paths leave to the classic
    /// one). Interrupts must be disabled on
    /// <paramref name="cpu"/> from before the walk until the slot is no longer used: that is what keeps the tables
    /// walked from being freed (<see cref="PteSlot"/>).
    /// </summary>
    /// <param name="cpu">The walking CPU, on its own thread, with interrupts disabled (<see cref="Cpu.LocalIrqDisable"/>).</param>
    /// <param name="mm">The address space.</param>
    /// <param name="address">A user address.</param>
    /// <returns>The entry and its table.</returns>
    /// <exception cref="InvalidOperationException">Interrupts are enabled on <paramref name="cpu"/>: a table could be
    /// freed, and reused, under the walk.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static PteSlot WalkLockless(Cpu cpu, AddressSpace mm, ulong address)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        ArgumentNullException.ThrowIfNull(mm);
        if (!cpu.IrqsDisabled)
        {
            ThrowWalkWithIrqsEnabled(cpu);
        }

        ulong* entry = mm.PageTable.WalkLocklessLeaf(address, out long ptePfn, out bool huge);
        if (huge)
        {
            return PteSlot.HugePmd; // A PMD that maps a 2 MiB page: no PTE table to lock or install in.
        }

        // The PFN comes from a PMD entry of a table this walk reached with interrupts off, so it names a live table.
        return entry == null ? default : new PteSlot(entry, ref mm.Machine.Memory.FrameUnchecked(ptePfn), ptePfn);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowWalkWithIrqsEnabled(Cpu cpu) =>
        throw new InvalidOperationException($"FaultCore.WalkLockless on CPU {cpu.Id} with interrupts enabled: a page table can be freed under a lockless walk unless interrupts stay disabled (Cpu.LocalIrqDisable) until the slot is no longer used.");

    /// <summary>
    /// Allocates a frame for an anonymous page and charges it to the memory cgroup (Linux <c>alloc_anon_folio</c> →
    /// <c>mem_cgroup_charge</c>, before the PTL); -1 when there is no frame or the cgroup refuses the charge.
    /// </summary>
    private static long AllocateUserPage(Cpu cpu)
    {
        long pfn = cpu.Machine.Frames.TryAllocate(cpu.Id, FrameState.Preparing);
        if (pfn >= 0 && !cpu.Machine.Memcg.TryCharge(cpu.Id))
        {
            cpu.Machine.Frames.Free(cpu.Id, pfn);
            return -1;
        }

        return pfn;
    }

    /// <summary>Releases a prepared page that was not installed.</summary>
    /// <param name="cpu">The CPU.</param>
    /// <param name="mm">The address space.</param>
    /// <param name="page">The page.</param>
    public static void Abandon(Cpu cpu, AddressSpace mm, ref PreparedPage page)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        ArgumentNullException.ThrowIfNull(mm);
        if (page.Fresh)
        {
            mm.Machine.Frames.Free(cpu.Id, page.Pfn); // Never installed: never on the LRU.
            mm.Machine.Memcg.Uncharge(cpu.Id, 1);
            page.Fresh = false;
        }
    }

    /// <summary>
    /// A fault on a present PTE that does not permit the access while the VMA does: write-enable an exclusive
    /// anonymous page or a shared-file page, copy-on-write a page-cache page in a private mapping (with a shootdown of
    /// the old translation, under the PTL), or restore user access after a protection change.
    /// </summary>
    private static FaultResult FixPresent(Cpu cpu, AddressSpace mm, Vma vma, ulong address, bool write, ulong* entry, long ptePfn, ulong pte, bool vmaLocked)
    {
        PhysicalMemory memory = mm.Machine.Memory;
        if (write && new Pte(pte).Pfn == mm.Machine.ZeroPfn)
        {
            return CopyZeroPage(cpu, mm, vma, address, entry, ptePfn, pte, vmaLocked);
        }

        ref PageFrame table = ref memory.Frame(ptePfn);
        cpu.LockPtl(ref table.Ptl);
        try
        {
            if (*entry != pte)
            {
                cpu.Count(CpuCounter.FaultRaced);
                return FaultResult.Handled;
            }

            long pfn = new Pte(pte).Pfn;
            ref PageFrame frame = ref memory.Frame(pfn);
            FrameState state = frame.ReadState();
            ulong wanted = PteFlagsFor(vma, state);
            if (write && (wanted & Pte.Writable) == 0 && state == FrameState.PageCache && vma.Kind == MappingKind.PrivateFile)
            {
                // Copy-on-write of a page-cache page into a private frame, which needs the VMA's anon_vma: under the
                // VMA lock without one, retry under the mmap lock (6.6 do_wp_page's check; 6.7+ wp_page_copy's
                // vmf_anon_prepare).
                if (vmaLocked && !vma.HasAnonVma)
                {
                    return FaultResult.Retry;
                }

                if (!vmaLocked)
                {
                    vma.PrepareAnonVma();
                }

                ThrowIfShootdownImpossible(cpu);
                long copy = AllocateUserPage(cpu);
                if (copy < 0)
                {
                    return FaultResult.OutOfMemory;
                }

                PageKernels.Copy(memory.FrameDataUnchecked(pfn), memory.FrameDataUnchecked(copy));
                cpu.Count(CpuCounter.PagesCopied);
                ref PageFrame copyFrame = ref memory.Frame(copy);
                copyFrame.MapCount = 1;
                copyFrame.WriteState(FrameState.Anonymous);
                cpu.Machine.Lru.Add(cpu.Id, copy); // Under the PTL, before the PTE store (as in Install).
                ulong flags = PteFlagsFor(vma, FrameState.Anonymous) | Pte.Present | Pte.Accessed | Pte.Dirty;

                // Release: the copy is complete before the PTE points at it.
                VirtualTime.Access(entry, LineAccess.Store);
                Volatile.Write(ref *entry, Pte.Make(copy, flags).Value);
                Interlocked.Decrement(ref frame.MapCount);

                // Other CPUs may still cache the read-only translation of the page-cache page; after this returns
                // none can read the old page through this address (Linux: flush_tlb_page in wp_page_copy).
                mm.FlushTlbRange(cpu, address & ~0xFFFUL, (address & ~0xFFFUL) + PhysicalMemory.PageSize, tablesFreed: false);
                cpu.Count(CpuCounter.FaultWriteProtect);
                return FaultResult.Handled;
            }

            ulong updated = wanted | Pte.Present | Pte.Accessed | (pte & Pte.PfnMask) | (write ? Pte.Dirty : pte & Pte.Dirty);
            if (write && (updated & Pte.Writable) == 0)
            {
                return FaultResult.SegmentationFault; // Cannot happen for a VMA that allows writes; defensive.
            }

            if (write && state == FrameState.PageCache)
            {
                // A write to a clean shared-file page (write-notify): 6.6 returns VM_FAULT_RETRY from do_wp_page's
                // shared branch under the VMA lock; 6.7 ("handle write faults to RO pages under the VMA lock") does not.
                if (vmaLocked && mm.VmaLockScope <= PerVmaLockScope.FileRetry)
                {
                    return FaultResult.Retry;
                }

                frame.Flags |= (int)PageFrameFlags.Dirty;
            }

            // Release store under the PTL: widening only (write-enable or user-enable), so no shootdown is needed;
            // a CPU with the narrower entry cached faults, walks, and finds this one.
            VirtualTime.Access(entry, LineAccess.Store);
            Volatile.Write(ref *entry, updated);
            cpu.Count(write ? CpuCounter.FaultWriteProtect : CpuCounter.FaultRaced);
            return FaultResult.Handled;
        }
        finally
        {
            table.Ptl.Unlock(cpu.Id);
        }
    }

    /// <summary>
    /// A write to the zero page (Linux <c>wp_page_copy</c> with the zero pfn): allocate and zero a private frame outside
    /// the PTL, then, if the PTE still maps the zero page, point it at the new frame and shoot down the old read-only
    /// translation. The zero page itself is neither map-counted nor freed.
    /// </summary>
    private static FaultResult CopyZeroPage(Cpu cpu, AddressSpace mm, Vma vma, ulong address, ulong* entry, long ptePfn, ulong pte, bool vmaLocked)
    {
        // The copy is a private anonymous page: it needs the anon_vma (vmf_anon_prepare: retry under the VMA lock
        // without one; __anon_vma_prepare under the mmap lock).
        if (vmaLocked && !vma.HasAnonVma)
        {
            return FaultResult.Retry;
        }

        if (!vmaLocked)
        {
            vma.PrepareAnonVma();
        }

        ThrowIfShootdownImpossible(cpu);
        PhysicalMemory memory = mm.Machine.Memory;
        long copy = AllocateUserPage(cpu);
        if (copy < 0)
        {
            return FaultResult.OutOfMemory;
        }

        // Zeroed, not copied: Linux's wp_page_copy allocates a zeroed page when the old one is the zero pfn.
        PageKernels.Clear(memory.FrameDataUnchecked(copy));
        cpu.Count(CpuCounter.PagesZeroed);
        ref PageFrame table = ref memory.Frame(ptePfn);
        cpu.LockPtl(ref table.Ptl);
        bool installed = false;
        try
        {
            // pte_same under the PTL: another CPU may have copied it first, or an unmap cleared it.
            if (*entry == pte)
            {
                ref PageFrame copyFrame = ref memory.Frame(copy);
                copyFrame.MapCount = 1;
                copyFrame.WriteState(FrameState.Anonymous);
                cpu.Machine.Lru.Add(cpu.Id, copy); // Under the PTL, before the PTE store (as in Install).
                ulong flags = PteFlagsFor(vma, FrameState.Anonymous) | Pte.Present | Pte.Accessed | Pte.Dirty;

                // Release: the zeroed frame and its metadata are visible before the PTE that maps it.
                VirtualTime.Access(entry, LineAccess.Store);
                Volatile.Write(ref *entry, Pte.Make(copy, flags).Value);

                // Other CPUs may still cache the read-only translation of the zero page; after this none reads it
                // through this address (Linux: ptep_clear_flush in wp_page_copy).
                mm.FlushTlbRange(cpu, address & ~0xFFFUL, (address & ~0xFFFUL) + PhysicalMemory.PageSize, tablesFreed: false);
                installed = true;
            }
        }
        finally
        {
            table.Ptl.Unlock(cpu.Id);
        }

        if (!installed)
        {
            cpu.Machine.Frames.Free(cpu.Id, copy); // Never mapped (nor on the LRU): no flush needed before freeing.
            cpu.Machine.Memcg.Uncharge(cpu.Id, 1);
            cpu.Count(CpuCounter.FaultRaced);
            return FaultResult.Handled;
        }

        cpu.Count(CpuCounter.FaultWriteProtect);
        return FaultResult.Handled;
    }

    /// <summary>
    /// A copy-on-write fault ends with a shootdown of the old translation, which is refused with interrupts disabled
    /// (<c>Cpu.Shootdown</c>); refuse the fault before it allocates or maps anything, so that the failure leaves
    /// no trace (a user-mode fault never has interrupts off in Linux; only a misused CPU gets here).
    /// </summary>
    private static void ThrowIfShootdownImpossible(Cpu cpu)
    {
        if (cpu.IrqsDisabled)
        {
            throw new InvalidOperationException($"CPU {cpu.Id}: a copy-on-write fault with interrupts disabled (it must shoot down TLBs). Enable interrupts first.");
        }
    }
}
