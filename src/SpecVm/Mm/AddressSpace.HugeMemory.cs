using SpecVm.Memory;
using SpecVm.Paging;
using SpecVm.Smp;
using SpecVm.Sync;

namespace SpecVm.Mm;

// AddressSpace, by operation: what munmap, madvise(MADV_DONTNEED) and mprotect do to a PMD that maps a 2 MiB page
// (Linux mm/huge_memory.c: zap_huge_pmd, __split_huge_pmd, change_huge_pmd). The huge fault itself is a fault
// strategy's work (FaultCore, do_huge_pmd_anonymous_page).
public sealed unsafe partial class AddressSpace
{
    /// <summary>
    /// Zaps the huge page mapped by <paramref name="pmd"/> into this CPU's gather (Linux <c>zap_huge_pmd</c>): under the
    /// PMD lock, clear the entry, make the 512 frames await the flush and gather the page as one entry (its head);
    /// the deposited PTE table, which no walker ever reached, is freed at once (<c>zap_deposited_table</c>). Returns false,
    /// changing nothing, if the entry no longer maps a huge page (a concurrent split or zap under the read lock): the
    /// caller then zaps PTEs as usual. A full gather flushes under the PMD lock and frees after it, as the PTE zap does.
    /// </summary>
    private bool ZapHuge(Cpu cpu, ulong* pmd, long pmdTablePfn, long[] gather, ulong flushStart, ulong flushEnd, ref int n, ref bool unflushed)
    {
        ref PageFrame table = ref _memory.Frame(pmdTablePfn);
        long deposit;
        bool forceFlush = false;
        cpu.SetSpinTarget("PMD lock of PMD table", pmdTablePfn);
        cpu.LockPtl(ref table.Ptl);
        try
        {
            ulong old = *pmd;
            if ((old & Pte.Huge) == 0)
            {
                return false; // Split or zapped since the walk (DontNeed runs beside other DontNeeds and faults).
            }

            // Release store under the PMD lock (as in ZapRange): walkers that read the entry after this see nothing;
            // those that read it before may still use subpages until the shootdown, which is why the page waits.
            VirtualTime.Work(SimWork.PageZap);
            VirtualTime.Access(pmd, LineAccess.Store);
            Volatile.Write(ref *pmd, 0UL);
            unflushed = true;
            long head = new Pte(old).Pfn;
            deposit = _memory.Frame(head).Index;
            for (int i = 0; i < PageTable.HugePages; i++)
            {
                ref PageFrame frame = ref _memory.FrameUnchecked(head + i);
                frame.MapCount = 0;
                frame.WriteState(FrameState.AwaitingFlush);
            }

            if (PlantFreeHugeBeforeShootdown)
            {
                // Planted bug for tests: free the page now, while other CPUs' TLBs may still reach its subpages.
                _machine.Lru.DrainAdds(cpu.Id);
                _machine.Lru.Release(cpu.Id, head);
                _machine.Lru.FinishRelease(cpu.Id);
                _machine.Memcg.Uncharge(cpu.Id, PageTable.HugePages);
            }
            else
            {
                gather[n++] = head;
                if (n == gather.Length)
                {
                    forceFlush = true; // The batch is full: flush under the lock, free after it (as ZapRange).
                    FlushTlbRange(cpu, flushStart, flushEnd, tablesFreed: false);
                    unflushed = false;
                }
            }
        }
        finally
        {
            table.Ptl.Unlock(cpu.Id);
        }

        _pageTable.Withdraw();
        _machine.Frames.Free(cpu.Id, deposit);
        if (forceFlush)
        {
            FreeGathered(cpu, n);
            n = 0;
        }

        return true;
    }

    /// <summary>
    /// Splits the huge page mapped by <paramref name="pmd"/> into 512 PTEs in its deposited table (Linux
    /// <c>__split_huge_pmd</c>, then, as the model does not keep partly mapped huge pages, <c>split_huge_page</c>: the
    /// frames become ordinary 4 KiB frames, freed one by one from now on). Under the PMD lock; the range is shot down
    /// before the lock is dropped (Linux's <c>pmdp_invalidate</c> flushes the huge translation there), so the split
    /// costs one shootdown. Nothing happens if the entry no longer maps a huge page. Interrupts must be on.
    /// </summary>
    private void SplitHuge(Cpu cpu, ulong* pmd, long pmdTablePfn, ulong regionBase)
    {
        ref PageFrame table = ref _memory.Frame(pmdTablePfn);
        cpu.SetSpinTarget("PMD lock of PMD table", pmdTablePfn);
        cpu.LockPtl(ref table.Ptl);
        try
        {
            ulong huge = *pmd;
            if ((huge & Pte.Huge) == 0)
            {
                return; // Split or zapped by another CPU since the walk.
            }

            long head = new Pte(huge).Pfn;
            long deposit = _memory.Frame(head).Index;
            _pageTable.SplitHuge(pmd, pmdTablePfn, huge, regionBase, deposit, PlantSplitDropsSubpage);
            _machine.Frames.Dissolve(head);

            cpu.Count(CpuCounter.ThpSplitPmd);
            FlushTlbRange(cpu, regionBase, regionBase + PageTable.PteTableSpan, tablesFreed: false);
        }
        finally
        {
            table.Ptl.Unlock(cpu.Id);
        }
    }

    /// <summary>
    /// Rewrites the huge entry at <paramref name="pmd"/> for <paramref name="vma"/>'s protection (Linux
    /// <c>change_huge_pmd</c>), keeping the page, the accessed and dirty bits; true if a right narrowed (the caller
    /// shoots down). Null if the entry no longer maps a huge page (the caller then changes PTEs as usual).
    /// </summary>
    private bool? ChangeHuge(Cpu cpu, Vma vma, ulong* pmd, long pmdTablePfn)
    {
        ref PageFrame table = ref _memory.Frame(pmdTablePfn);
        cpu.LockPtl(ref table.Ptl);
        try
        {
            ulong old = *pmd;
            if ((old & Pte.Huge) == 0)
            {
                return null;
            }

            ulong updated = PteRights.For(vma, FrameState.Anonymous) | (old & (Pte.PfnMask | Pte.Accessed | Pte.Dirty)) | Pte.Present | Pte.Huge;
            if (updated == old)
            {
                return false;
            }

            // Release store under the PMD lock (see ChangePtes).
            VirtualTime.Access(pmd, LineAccess.Store);
            Volatile.Write(ref *pmd, updated);
            return (old & ~updated & (Pte.Writable | Pte.User)) != 0;
        }
        finally
        {
            table.Ptl.Unlock(cpu.Id);
        }
    }

    /// <summary>
    /// Before PTEs of [<paramref name="from"/>, <paramref name="to"/>) in the 2 MiB region at <paramref name="region"/>
    /// are zapped or changed: if a huge page maps the region and the range covers only part of it, split it (Linux
    /// <c>zap_pmd_range</c> and <c>change_pmd_range</c> call <c>__split_huge_pmd</c> when <c>next - addr != HPAGE_PMD_SIZE</c>).
    /// Returns the huge entry (and its table) when the range covers the whole region and a huge page maps it, for the
    /// caller's whole-page operation; null otherwise.
    /// </summary>
    private ulong* HugeEntryFor(Cpu cpu, ulong region, ulong from, ulong to, out long pmdTablePfn)
    {
        ulong* leaf = _pageTable.WalkLocklessLeaf(region, out pmdTablePfn, out bool huge);
        if (!huge)
        {
            return null;
        }

        if (from == region && to == region + PageTable.PteTableSpan)
        {
            return leaf;
        }

        SplitHuge(cpu, leaf, pmdTablePfn, region);
        return null;
    }
}
