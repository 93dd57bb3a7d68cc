using System.Runtime.CompilerServices;
using SpecVm.Memory;
using SpecVm.Mm;
using SpecVm.Paging;
using SpecVm.Smp;
using SpecVm.Sync;

namespace SpecVm.Faults;

/// <summary>A frame made ready for a fault before any lock is taken (Linux prepares the page outside the PTL too).</summary>
public struct PreparedPage
{
    /// <summary>The frame to map.</summary>
    public long Pfn;

    /// <summary>PTE flag bits (without the PFN).</summary>
    public ulong Flags;

    /// <summary>True if <see cref="Pfn"/> is a fresh frame owned by this fault (freed if the fault is abandoned).</summary>
    public bool Fresh;

    /// <summary>True if the frame is a page-cache page that becomes dirty when mapped.</summary>
    public bool DirtiesPageCache;

    /// <summary>The counter of the fault kind.</summary>
    public CpuCounter Kind;
}

/// <summary>
/// The work every fault strategy shares: prepare a frame (zero, copy from the page cache, or find the page-cache page),
/// install it under the PTL after rechecking the PTE, and resolve faults on present PTEs (copy-on-write, write-enable,
/// re-enable). Public so that a custom strategy in one file can use it.
/// </summary>
public static unsafe class FaultCore
{
    /// <summary>The PTE flags a page of <paramref name="vma"/> gets, for a frame in state <paramref name="frameState"/>.</summary>
    /// <param name="vma">The VMA.</param>
    /// <param name="frameState">The frame's state once mapped (<see cref="FrameState.Anonymous"/> or <see cref="FrameState.PageCache"/>).</param>
    public static ulong PteFlagsFor(Vma vma, FrameState frameState) => PteRights.For(vma, frameState);

    /// <summary>
    /// Handles a fault with a VMA that cannot change under the caller (mmap lock held for read, or the VMA read-locked):
    /// checks access, allocates missing page tables, prepares the frame, and installs it under the PTL.
    /// </summary>
    /// <param name="cpu">The faulting CPU.</param>
    /// <param name="mm">The address space.</param>
    /// <param name="vma">The VMA containing <paramref name="address"/>.</param>
    /// <param name="address">The faulting address.</param>
    /// <param name="write">True for a write.</param>
    public static FaultResult HandleStable(Cpu cpu, AddressSpace mm, Vma vma, ulong address, bool write)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        ArgumentNullException.ThrowIfNull(mm);
        ArgumentNullException.ThrowIfNull(vma);
        if (!vma.Allows(write))
        {
            return FaultResult.SegmentationFault;
        }

        ulong* entry = mm.PageTable.WalkAllocate(cpu.Id, address, out long ptePfn);
        if (entry == null)
        {
            return FaultResult.OutOfMemory;
        }

        // Acquire: see the frame state of whatever the entry maps.
        ulong pte = Volatile.Read(ref *entry);
        if ((pte & Pte.Present) != 0)
        {
            return FixPresent(cpu, mm, vma, address, write, entry, ptePfn, pte);
        }

        FaultResult prepared = Prepare(cpu, vma, address, write, out PreparedPage page);
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

    /// <summary>Prepares the frame for a not-present fault outside any lock.</summary>
    /// <param name="cpu">The faulting CPU.</param>
    /// <param name="vma">The VMA.</param>
    /// <param name="address">The faulting address.</param>
    /// <param name="write">True for a write.</param>
    /// <param name="page">The prepared page.</param>
    public static FaultResult Prepare(Cpu cpu, Vma vma, ulong address, bool write, out PreparedPage page)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        ArgumentNullException.ThrowIfNull(vma);
        page = default;
        PhysicalMemory memory = cpu.Machine.Memory;
        switch (vma.Kind)
        {
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
    public static bool Install(Cpu cpu, AddressSpace mm, ref PreparedPage page, ulong* entry, ulong expected)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        ArgumentNullException.ThrowIfNull(mm);
        if (*entry != expected)
        {
            return false;
        }

        ref PageFrame frame = ref mm.Machine.Memory.Frame(page.Pfn);
        if (page.Fresh)
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
        page.Fresh = false;
        return true;
    }

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
    private static FaultResult FixPresent(Cpu cpu, AddressSpace mm, Vma vma, ulong address, bool write, ulong* entry, long ptePfn, ulong pte)
    {
        PhysicalMemory memory = mm.Machine.Memory;
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
                // Copy-on-write of a page-cache page into a private frame.
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
}
