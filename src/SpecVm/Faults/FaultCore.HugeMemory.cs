using SpecVm.Memory;
using SpecVm.Mm;
using SpecVm.Paging;
using SpecVm.Smp;
using SpecVm.Sync;

namespace SpecVm.Faults;

// FaultCore, by concern: faults at the PMD level, with transparent huge pages on (Linux mm/huge_memory.c
// do_huge_pmd_anonymous_page, do_huge_pmd_wp_page / huge_pmd_set_accessed). The unmap, madvise and mprotect side of
// a huge PMD (zap, split, change) is AddressSpace's.
public static unsafe partial class FaultCore
{
    /// <summary>
    /// The PMD step of a fault under the mmap lock or a VMA lock: a huge page mapped there (fix its rights, or find the
    /// fault done), or an empty PMD where a huge page may go (map one). Null to go on with the 4 KiB path: no huge page
    /// applies, or none was available (counted <see cref="CpuCounter.ThpFaultFallback"/>).
    /// </summary>
    private static FaultResult? HandleHugePmd(Cpu cpu, AddressSpace mm, Vma vma, ulong address, bool write, bool vmaLocked)
    {
        bool applies = mm.HugeFaultApplies(vma.Kind, vma.Start, vma.End, address, write);
        long pmdTablePfn;
        ulong* pmd = applies
            ? mm.PageTable.WalkAllocate(cpu.Id, cpu, address, 2, out pmdTablePfn, out _) // pud_alloc, pmd_alloc
            : mm.PageTable.PmdEntry(address, out pmdTablePfn);
        if (pmd == null)
        {
            // Out of frames for an upper table, or (not applying) no PMD table yet and so no huge page here.
            return applies ? FaultResult.OutOfMemory : null;
        }

        // Acquire (READ_ONCE of the PMD): the frames of a huge page it maps, and their states, are visible.
        ulong value = Volatile.Read(ref *pmd);
        if ((value & Pte.Huge) != 0)
        {
            return FixPresentHuge(cpu, mm, vma, write, pmd, pmdTablePfn, value);
        }

        return value == 0 && applies ? HugeAnonymousFault(cpu, mm, vma, address, write, pmd, pmdTablePfn, vmaLocked) : null;
    }

    /// <summary>
    /// Linux <c>do_huge_pmd_anonymous_page</c>: give the VMA its <c>anon_vma</c> (under a VMA lock without one: retry
    /// under the mmap lock, <c>vmf_anon_prepare</c>), allocate a 2 MiB page from the machine's reserve (none: null, the
    /// caller falls back to 4 KiB, <c>thp_fault_fallback</c>), charge its 512 pages, allocate the PTE table deposited for
    /// a later split, zero the 512 frames outside any lock, then under the PMD lock install the huge entry if the PMD is
    /// still empty.
    /// </summary>
    private static FaultResult? HugeAnonymousFault(Cpu cpu, AddressSpace mm, Vma vma, ulong address, bool write, ulong* pmd, long pmdTablePfn, bool vmaLocked)
    {
        if (vmaLocked && !vma.HasAnonVma)
        {
            return FaultResult.Retry;
        }

        if (!vmaLocked)
        {
            vma.PrepareAnonVma(); // anon_vma_prepare, under the mmap lock as Linux requires.
        }

        Machine machine = cpu.Machine;
        FrameAllocator frames = machine.Frames;
        long head = frames.TryAllocateHuge(cpu.Id, FrameState.Preparing);
        if (head < 0)
        {
            cpu.Count(CpuCounter.ThpFaultFallback);
            return null;
        }

        if (!machine.Memcg.TryCharge(cpu.Id, PageTable.HugePages))
        {
            frames.Free(cpu.Id, head);
            cpu.Count(CpuCounter.ThpFaultFallback); // Linux counts THP_FAULT_FALLBACK_CHARGE too.
            return null;
        }

        long deposit = frames.TryAllocate(cpu.Id, FrameState.PageTable); // pte_alloc_one: VM_FAULT_OOM if it fails.
        if (deposit < 0)
        {
            frames.Free(cpu.Id, head);
            machine.Memcg.Uncharge(cpu.Id, PageTable.HugePages);
            return FaultResult.OutOfMemory;
        }

        ulong haddr = address & ~(PageTable.PteTableSpan - 1);
        mm.PageTable.Deposit(deposit, haddr);

        // clear_huge_page: the 2 MiB are zeroed 4 KiB at a time, outside any lock, as a 4 KiB fault zeroes its page.
        PhysicalMemory memory = machine.Memory;
        for (int i = 0; i < PageTable.HugePages; i++)
        {
            PageKernels.Clear(memory.FrameData(head + i));
        }

        cpu.Count(CpuCounter.PagesZeroed, PageTable.HugePages);
        ref PageFrame table = ref memory.Frame(pmdTablePfn);
        bool installed = false;
        bool published = false;
        cpu.SetSpinTarget("PMD lock of PMD table", pmdTablePfn);
        cpu.LockPtl(ref table.Ptl);
        try
        {
            // pmd_none under the PMD lock: another CPU may have mapped a huge page, or (a 4 KiB fault that fell back)
            // installed a PTE table, since our read.
            if (*pmd == 0)
            {
                memory.Frame(head).Index = deposit;
                for (int i = 0; i < PageTable.HugePages; i++)
                {
                    ref PageFrame frame = ref memory.Frame(head + i);
                    frame.MapCount = 1;
                    frame.WriteState(FrameState.Anonymous);
                }

                // Under the lock and before the entry is published, as do_anonymous_page (see Install): one LRU entry
                // for the whole folio.
                machine.Lru.Add(cpu.Id, head);
                published = true;

                // mk_huge_pmd + pmd_mkdirty + maybe_pmd_mkwrite: always dirty, writable as the VMA allows.
                ulong flags = PteFlagsFor(vma, FrameState.Anonymous) | Pte.Present | Pte.Accessed | Pte.Dirty | Pte.Huge;
                VirtualTime.Access(pmd, LineAccess.Store);

                // CAS from empty (a full fence: the zeroed frames, their states and the deposit are visible before the
                // entry). PTE-table installs take no PMD lock in the model (a CAS from empty too), so one may still win.
                installed = PageTable.TryInstallHuge(pmd, Pte.Make(head, flags).Value);
            }
        }
        finally
        {
            table.Ptl.Unlock(cpu.Id);
        }

        if (!installed)
        {
            memory.Frame(head).Index = 0;
            mm.PageTable.Withdraw();
            frames.Free(cpu.Id, deposit);
            if (published)
            {
                // On this CPU's LRU batch but never mapped: released as an unmapped page (no TLB can hold it).
                machine.Lru.Release(cpu.Id, head);
                machine.Lru.FinishRelease(cpu.Id);
            }
            else
            {
                frames.Free(cpu.Id, head);
            }

            machine.Memcg.Uncharge(cpu.Id, PageTable.HugePages);
            cpu.Count(CpuCounter.FaultRaced);
            return FaultResult.Handled;
        }

        cpu.Count(write ? CpuCounter.FaultAnonWrite : CpuCounter.FaultAnonRead);
        cpu.Count(CpuCounter.ThpFaultAlloc);
        return FaultResult.Handled;
    }

    /// <summary>
    /// A fault on a PMD that maps a huge page (Linux <c>huge_pmd_set_accessed</c>, <c>do_huge_pmd_wp_page</c> on an
    /// exclusive anonymous page): done already if the entry permits the access (another CPU's fault, or a split since);
    /// otherwise, under the PMD lock, its rights are widened to the VMA's. No shootdown: rights only widen.
    /// </summary>
    private static FaultResult FixPresentHuge(Cpu cpu, AddressSpace mm, Vma vma, bool write, ulong* pmd, long pmdTablePfn, ulong value)
    {
        ulong need = write ? Pte.Present | Pte.User | Pte.Writable : Pte.Present | Pte.User;
        if ((value & need) == need)
        {
            cpu.Count(CpuCounter.FaultRaced);
            return FaultResult.Handled;
        }

        ref PageFrame table = ref mm.Machine.Memory.Frame(pmdTablePfn);
        cpu.LockPtl(ref table.Ptl);
        try
        {
            if (*pmd != value)
            {
                cpu.Count(CpuCounter.FaultRaced);
                return FaultResult.Handled;
            }

            ulong updated = PteFlagsFor(vma, FrameState.Anonymous) | (value & (Pte.PfnMask | Pte.Dirty)) | Pte.Present | Pte.Accessed | Pte.Huge
                | (write ? Pte.Dirty : 0);
            if ((updated & need) != need)
            {
                return FaultResult.SegmentationFault; // Cannot happen for a VMA that allows the access; defensive.
            }

            // Release store under the PMD lock: widening only, so no shootdown (as FixPresent).
            VirtualTime.Access(pmd, LineAccess.Store);
            Volatile.Write(ref *pmd, updated);
            cpu.Count(write ? CpuCounter.FaultWriteProtect : CpuCounter.FaultRaced);
            return FaultResult.Handled;
        }
        finally
        {
            table.Ptl.Unlock(cpu.Id);
        }
    }
}
