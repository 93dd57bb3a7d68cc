using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using SpecVm.Sync;

namespace SpecVm.Memory;

/// <summary>
/// The LRU list of anonymous pages with its lock and per-CPU folio batches (Linux <c>struct lruvec</c>,
/// <c>lru_lock</c>, and mm/swap.c's <c>cpu_fbatches.lru_add</c>): a new page joins its CPU's batch, and a full batch
/// takes the lock once to move every page onto the list; freeing takes the lock once per batch again to take them off.
/// </summary>
/// <remarks>
/// <para>
/// Linux (mm/swap.c): <c>folio_add_lru</c> puts a new folio in the CPU's <c>folio_batch</c> (<c>PAGEVEC_SIZE</c> 14 in
/// 4.x, 15 until 6.8, <c>FOLIO_BATCH_SIZE</c> 31 since 6.9); when the batch is full <c>folio_batch_move_lru</c> takes
/// <c>lruvec->lru_lock</c> (a spinlock, irqs off) once and, for each folio, sets <c>PG_lru</c> and links it into the
/// list — a miss on each <c>struct page</c> and on the list head, inside the lock. Freeing (<c>zap_pte_range</c> →
/// <c>tlb_flush_mmu</c> → <c>folios_put_refs</c> / <c>release_pages</c>) takes the lock again, holding it across a run
/// of folios of one lruvec, to unlink each. page_fault1/2 at high core counts are bound by this lock (one lruvec per
/// node and memcg: every CPU shares it).
/// </para>
/// <para>
/// The model: each CPU has an add batch and a release batch (plain arrays, owner-only, no atomics; the per-CPU headers
/// are padded to lines). The lock is a <see cref="PtLock"/> alone on a native line, taken with interrupts off (the spin
/// serves no IPIs; its holder never waits for one); the list is its count, on the next line, written under the lock.
/// Inside the lock every page's metadata line is touched (a CAS of its <see cref="PageFrame.LruState"/> in real time,
/// plus one seam access in virtual time). <see cref="FolioBatchSize"/> 0 turns the LRU off: no batches, no lock.
/// </para>
/// <para>
/// A page's LRU state (<see cref="PageFrame.LruState"/>) makes freeing safe when the page still sits in some CPU's add
/// batch (Linux holds a reference from the batch; the last <c>folio_put</c> then frees it in the batch drain):
/// <code>
///   None --Add (faulting CPU, under the PTL, before the PTE store)--> Pending
///   Pending --batch drain (batch owner, under lru_lock, CAS)--> OnLru --release (zapper, under lru_lock)--> None, freed
///   Pending --release (zapper, CAS)--> Orphan --batch drain (owner, CAS fails)--> None, freed by the batch owner
/// </code>
/// Exactly one of the two CASes on a Pending page wins, so a page is freed exactly once. A CPU drains its add batch
/// before it frees pages (Linux's <c>lru_add_drain</c> in <c>unmap_region</c>) and when its work item ends (the
/// machine's CPU loop and the simulator do it), so no page waits in a batch for a CPU that has gone idle.
/// </para>
/// </remarks>
internal sealed unsafe class LruVec : IDisposable
{
    /// <summary>Linux 6.9+'s <c>FOLIO_BATCH_SIZE</c> (include/linux/pagevec.h): 31 folios per per-CPU batch.</summary>
    internal const int DefaultFolioBatchSize = 31;

    /// <summary>The largest batch accepted (a batch is a per-CPU native array of this many PFNs).</summary>
    internal const int MaxFolioBatchSize = 4096;

    /// <summary>States of <see cref="PageFrame.LruState"/> (see the type's remarks).</summary>
    internal const int None = 0, Pending = 1, OnLru = 2, Orphan = 3;

    private readonly FrameAllocator _frames;
    private readonly PhysicalMemory _memory;
    private readonly int _batchSize;
    private readonly PerCpu<Batches> _batches;
    private readonly LockCounters _lockCounters;
    private readonly Lock _noCpuLock = new();
    private readonly int _noCpuOwner;

    // Two native lines: lru_lock alone on the first, the list (its count: Linux's list head and nr_pages) on the second.
    private byte* _lines;

    /// <summary>An LRU over <paramref name="frames"/>' memory for <paramref name="cpuCount"/> CPUs; batch 0 = off.</summary>
    public LruVec(FrameAllocator frames, int cpuCount, int folioBatchSize, LockCounters counters)
    {
        ArgumentNullException.ThrowIfNull(frames);
        ArgumentOutOfRangeException.ThrowIfNegative(folioBatchSize);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(folioBatchSize, MaxFolioBatchSize);
        _frames = frames;
        _memory = frames.Memory;
        _batchSize = folioBatchSize;
        _lockCounters = counters;
        _noCpuOwner = cpuCount;
        _batches = new PerCpu<Batches>(cpuCount);
        if (folioBatchSize > 0)
        {
            for (int i = 0; i < cpuCount; i++)
            {
                _batches[i].Adds = (long*)NativeMemory.AlignedAlloc((nuint)(folioBatchSize * sizeof(long)), CacheLine.Size);
                _batches[i].Releases = (long*)NativeMemory.AlignedAlloc((nuint)(folioBatchSize * sizeof(long)), CacheLine.Size);
            }
        }

        _lines = (byte*)NativeMemory.AlignedAlloc(2 * CacheLine.Size, CacheLine.Size);
        NativeMemory.Clear(_lines, 2 * CacheLine.Size);
    }

    /// <summary>Pages per per-CPU batch; 0 when the LRU is off.</summary>
    public int FolioBatchSize => _batchSize;

    /// <summary>Pages on the list (a racy snapshot; exact when the machine is quiet).</summary>
    public long OnList => Volatile.Read(ref *(long*)(_lines + CacheLine.Size));

    /// <summary>Pages waiting in CPU <paramref name="cpu"/>'s add batch (owner, or a quiet machine).</summary>
    internal int PendingAdds(int cpu) => _batches[cpu].AddCount;

    private ref PtLock LruLock => ref *(PtLock*)_lines;

    private ref long ListCount => ref *(long*)(_lines + CacheLine.Size);

    /// <summary>
    /// A new anonymous page joins CPU <paramref name="cpu"/>'s add batch (Linux <c>folio_add_lru</c>); a full batch is
    /// moved onto the list under the lock. Call before the PTE that maps the page is published (under the PTL), so
    /// that a CPU that can reach the page to free it sees it Pending.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Add(int cpu, long pfn)
    {
        if (_batchSize == 0)
        {
            return;
        }

        // Plain store: the page is not reachable by any other CPU yet; the PTE store that publishes it (a release,
        // after this) is what makes the state visible to a zapper, which reads the PTE under the same PTL.
        _memory.FrameUnchecked(pfn).LruState = Pending;
        ref Batches b = ref _batches[cpu];
        b.Adds[b.AddCount++] = pfn;
        if (b.AddCount == _batchSize)
        {
            MoveToList(cpu, ref b);
        }
    }

    /// <summary>Moves CPU <paramref name="cpu"/>'s add batch onto the list now (Linux <c>lru_add_drain</c>); the CPU's own thread only.</summary>
    public void DrainAdds(int cpu)
    {
        if (_batchSize == 0)
        {
            return;
        }

        ref Batches b = ref _batches[cpu];
        if (b.AddCount != 0)
        {
            MoveToList(cpu, ref b);
        }
    }

    /// <summary>
    /// Frees an anonymous page that no PTE maps any more and no TLB can reach (after the shootdown): off the LRU, then
    /// back to the allocator. With a CPU, pages on the list wait in its release batch and leave the list a batch per
    /// lock acquisition; call <see cref="FinishRelease"/> after the last page. Code on no CPU (cpu -1) takes the lock
    /// per page.
    /// </summary>
    public void Release(int cpu, long pfn)
    {
        if (_batchSize == 0)
        {
            _frames.Free(cpu, pfn);
            return;
        }

        ref PageFrame frame = ref _memory.FrameUnchecked(pfn);

        // Unmapped and on its way out (the zap path has already said so; AddressSpace.Dispose's pages say so here).
        // Before the CAS below: once an orphan is handed over, its batch owner may free and reuse it at any moment.
        frame.WriteState(FrameState.AwaitingFlush);

        // CAS (full fence) against the batch owner's CAS in MoveToList: exactly one of them takes a Pending page. If we
        // win, the page is the batch's to free (it must not be freed twice, nor freed while the batch still names it).
        if (Interlocked.CompareExchange(ref frame.LruState, Orphan, Pending) == Pending)
        {
            return;
        }

        // Acquire: a page the owner moved is OnLru, written under the lock before its release; we read it after our
        // failed CAS (a full fence), so a page that left Pending reads OnLru here.
        if (Volatile.Read(ref frame.LruState) != OnLru)
        {
            _frames.Free(cpu, pfn); // Never on the LRU (None).
            return;
        }

        if (cpu < 0)
        {
            lock (_noCpuLock)
            {
                LruLock.Lock(_noCpuOwner, null);
                VirtualTime.Access(_lines + CacheLine.Size, LineAccess.Store);
                TakeOffList(pfn);
                ListCount--;
                LruLock.Unlock(_noCpuOwner);
            }

            _frames.Free(cpu, pfn);
            return;
        }

        ref Batches b = ref _batches[cpu];
        b.Releases[b.ReleaseCount++] = pfn;
        if (b.ReleaseCount == _batchSize)
        {
            ReleaseBatch(cpu, ref b);
        }
    }

    /// <summary>Takes the rest of CPU <paramref name="cpu"/>'s release batch off the list and frees it.</summary>
    public void FinishRelease(int cpu)
    {
        if (_batchSize == 0 || cpu < 0)
        {
            return;
        }

        ref Batches b = ref _batches[cpu];
        if (b.ReleaseCount != 0)
        {
            ReleaseBatch(cpu, ref b);
        }
    }

    /// <summary>Frees the batches' native storage and the lock's lines.</summary>
    public void Dispose()
    {
        byte* lines = _lines;
        _lines = null;
        if (lines == null)
        {
            return;
        }

        for (int i = 0; i < _batches.Count; i++)
        {
            NativeMemory.AlignedFree(_batches[i].Adds);
            NativeMemory.AlignedFree(_batches[i].Releases);
        }

        NativeMemory.AlignedFree(lines);
        _batches.Dispose();
    }

    /// <summary>Linux <c>folio_batch_move_lru</c> with <c>lru_add</c>: the batch onto the list under one acquisition.</summary>
    private void MoveToList(int cpu, ref Batches b)
    {
        int n = b.AddCount;
        int orphans = 0;
        LockLru(cpu);
        VirtualTime.Access(_lines + CacheLine.Size, LineAccess.Store); // The list head and count.
        for (int i = 0; i < n; i++)
        {
            long pfn = b.Adds[i];
            ref PageFrame frame = ref _memory.FrameUnchecked(pfn);
            VirtualTime.Access(_memory, (int)pfn, LineAccess.Rmw); // PG_lru and the list links: the page's struct page line.

            // CAS (full fence) against Release's: Pending → OnLru publishes that the page is on the list (a zapper that
            // loses its CAS then reads OnLru and takes the page off under this lock). A failure means the page was
            // orphaned: freed while in this batch, so it is ours to free, after the lock.
            if (Interlocked.CompareExchange(ref frame.LruState, OnLru, Pending) != Pending)
            {
                b.Adds[orphans++] = pfn; // Compacted to the front (i >= orphans: nothing unread is overwritten).
            }
        }

        ListCount += n - orphans; // Under the lock: the list's count (its readers take racy snapshots).
        LruLock.Unlock(cpu);
        b.AddCount = 0;
        for (int i = 0; i < orphans; i++)
        {
            long pfn = b.Adds[i];
            _memory.FrameUnchecked(pfn).LruState = None; // Ours alone: the zapper gave it up with its CAS.
            _frames.Free(cpu, pfn);
        }
    }

    /// <summary>Linux <c>folios_put_refs</c> → <c>lruvec_del_folio</c>: the batch off the list under one acquisition, then freed.</summary>
    private void ReleaseBatch(int cpu, ref Batches b)
    {
        int n = b.ReleaseCount;
        LockLru(cpu);
        VirtualTime.Access(_lines + CacheLine.Size, LineAccess.Store);
        for (int i = 0; i < n; i++)
        {
            TakeOffList(b.Releases[i]);
        }

        ListCount -= n;
        LruLock.Unlock(cpu);
        b.ReleaseCount = 0;
        for (int i = 0; i < n; i++)
        {
            _frames.Free(cpu, b.Releases[i]);
        }
    }

    /// <summary>Unlinks one page (its line touched under the lock); only the releaser writes an OnLru page's state.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void TakeOffList(long pfn)
    {
        VirtualTime.Access(_memory, (int)pfn, LineAccess.Rmw); // The page's struct page line (PG_lru, list links).
        _memory.FrameUnchecked(pfn).LruState = None; // Plain: the lock's release publishes it; the frame is ours until freed.
    }

    /// <summary>What the native line at <paramref name="p"/> holds, if it is one of the LRU's (the simulator's line labels).</summary>
    internal string? LineLabel(byte* p) =>
        p >= _lines && p < _lines + CacheLine.Size ? "lru_lock" : p >= _lines + CacheLine.Size && p < _lines + (2 * CacheLine.Size) ? "LRU list" : null;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void LockLru(int cpu)
    {
        long waited = LruLock.LockTimed(cpu, null); // Irqs off (lruvec_lock_irqsave): the spin serves no IPIs.
        _lockCounters.Record(cpu, waited != 0, waited);
    }

    private struct Batches
    {
        public int AddCount;
        public int ReleaseCount;
        public long* Adds;
        public long* Releases;
    }
}
