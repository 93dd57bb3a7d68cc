using SpecVm.Paging;
using SpecVm.Smp;

namespace SpecVm.Mm;

// AddressSpace, by operation: munmap and madvise(MADV_DONTNEED): detach or keep the VMAs, zap, shoot down, free.
public sealed unsafe partial class AddressSpace
{
    /// <summary>
    /// Unmaps [<paramref name="start"/>, <paramref name="start"/> + <paramref name="length"/>) (<c>munmap</c>): splits
    /// VMAs at the edges, zaps PTEs, shoots down TLBs, frees frames and empty page tables. Unmapping a range with no
    /// mapping is allowed (as POSIX says).
    /// </summary>
    /// <param name="cpu">The CPU doing the call.</param>
    /// <param name="start">Page-aligned start.</param>
    /// <param name="length">Bytes: positive, a multiple of 4096.</param>
    public void Unmap(Cpu cpu, ulong start, ulong length)
    {
        CheckSyscall(cpu);
        CheckLength(length);
        CheckRange(start, length, nameof(start));
        ulong end = start + length;
        WriteLock(cpu);
        bool downgraded = false;
        try
        {
            var old = new List<Vma>();
            _index.CollectOverlapping(start, end, old);
            if (old.Count == 0)
            {
                return;
            }

            var pieces = new List<Vma>(2);
            foreach (Vma v in old)
            {
                BeginChange(cpu, v);
                if (v.Start < start)
                {
                    pieces.Add(Clone(v, v.Start, start, v.Protection));
                }

                if (v.End > end)
                {
                    pieces.Add(Clone(v, end, v.End, v.Protection));
                }
            }

            Hook(HookPoint.WriterBeforeIndexPublish, cpu);
            _index.Replace(old, pieces);
            Hook(HookPoint.WriterAfterIndexPublish, cpu);
            foreach (Vma v in old)
            {
                v.MarkDetached(); // Readers that find this VMA through an old index snapshot see it detached.
            }

            ulong zapStart = Math.Max(start, old[0].Start);
            ulong zapEnd = Math.Min(end, old[^1].End);

            // The hole is free again: let the next top-down placement find it (Linux searches for the highest gap
            // below mmap_base; without this, map/unmap loops march down the address space and every step needs new
            // upper-level page tables). Under the write lock: Map reads the hint under it.
            if (zapEnd <= MmapBase && zapEnd > _mmapHint)
            {
                _mmapHint = zapEnd;
            }

            if (_options.DowngradeOnUnmap)
            {
                // The VMAs are detached and the new index is published: the rest needs no write lock (Linux 4.20+
                // zaps under the read lock). Faults in other VMAs proceed; no writer can enter until we are done,
                // and no fault can reach the detached range, so the page tables freed below stay unreachable.
                DowngradeToRead(cpu);
                downgraded = true;
            }

            // Zap VMA by VMA, not the whole span: only VMAs have pages, and a sparse range (say, all of user space)
            // would otherwise cost a walk per 2 MiB of it, under the mmap lock (Linux's unmap_vmas goes VMA by VMA).
            int gathered = 0;
            bool zapped = false;
            foreach (Vma v in old)
            {
                ZapRange(cpu, Math.Max(start, v.Start), Math.Min(end, v.End), zapStart, zapEnd, ref gathered, ref zapped);
            }

            // Free the page tables whose region no VMA covers any more (Linux free_pgtables), again only where the
            // old VMAs were: PTE tables (2 MiB), then PMD (1 GiB) and PUD (512 GiB) tables, so that a long churn of
            // map and unmap over the address space returns every table but the root.
            List<long>? detached = null;
            for (int level = 1; level <= 3; level++)
            {
                ulong span = PageTable.SpanOf(level);
                ulong nextRegion = 0;
                foreach (Vma v in old)
                {
                    ulong from = Math.Max(nextRegion, Math.Max(start, v.Start) & ~(span - 1));
                    ulong to = Math.Min(end, v.End);
                    for (ulong region = from; region < to; region += span)
                    {
                        if (_index.FirstOverlap(region, region + span) == null)
                        {
                            _pageTable.DetachTables(region, level, detached ??= []);
                        }

                        nextRegion = region + span;
                    }
                }
            }

            if (detached is { Count: 0 })
            {
                detached = null;
            }

            if (PlantFreeTablesBeforeShootdown && detached != null)
            {
                // Planted bug for tests: free page tables before the TLB shootdown has been acknowledged.
                foreach (long table in detached)
                {
                    _machine.Frames.Free(cpu.Id, table);
                }

                detached = null;
            }

            Hook(HookPoint.WriterBetweenZapAndShootdown, cpu);
            if (zapped || detached != null)
            {
                FlushTlbRange(cpu, zapStart, zapEnd, tablesFreed: detached != null);
            }

            Hook(HookPoint.WriterAfterShootdown, cpu);
            FreeGathered(cpu, gathered);
            if (detached != null)
            {
                foreach (long table in detached)
                {
                    _machine.Frames.Free(cpu.Id, table);
                }
            }

            foreach (Vma v in old)
            {
                EndChangeAndRetire(v);
            }
        }
        finally
        {
            if (downgraded)
            {
                _mmapLock.ExitRead();
            }
            else
            {
                WriteUnlock(cpu);
            }
        }
    }

    /// <summary>
    /// Drops the pages of [<paramref name="start"/>, <paramref name="start"/> + <paramref name="length"/>)
    /// (<c>madvise(MADV_DONTNEED)</c>) under the mmap lock for read, leaving the VMAs: the next touch faults in a zero
    /// page (anonymous) or the page-cache page (file). The whole range must be mapped.
    /// </summary>
    /// <param name="cpu">The CPU doing the call.</param>
    /// <param name="start">Page-aligned start.</param>
    /// <param name="length">Bytes: positive, a multiple of 4096.</param>
    public void DontNeed(Cpu cpu, ulong start, ulong length)
    {
        CheckSyscall(cpu);
        CheckLength(length);
        CheckRange(start, length, nameof(start));
        ulong end = start + length;
        MmapReadLock(cpu);
        try
        {
            // A per-CPU scratch list: DontNeed runs under the read lock, so CPUs may be here at once; one list each
            // keeps the loaders' madvise path allocation-free.
            List<Vma> vmas = _scratch[cpu.Id] ??= new List<Vma>(4);
            vmas.Clear();
            _index.CollectOverlapping(start, end, vmas);
            CheckFullyMapped(vmas, start, end, nameof(start));
            vmas.Clear();
            int gathered = Zap(cpu, start, end, out bool zapped);
            Hook(HookPoint.WriterBetweenZapAndShootdown, cpu);
            if (zapped)
            {
                FlushTlbRange(cpu, start, end, tablesFreed: false);
            }

            Hook(HookPoint.WriterAfterShootdown, cpu);
            FreeGathered(cpu, gathered);
        }
        finally
        {
            _mmapLock.ExitRead();
        }
    }
}
