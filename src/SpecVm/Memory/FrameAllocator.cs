using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using SpecVm.Sync;

namespace SpecVm.Memory;

/// <summary>
/// Hands out frames from per-CPU caches refilled in batches from one global pool under a zone lock (Linux's per-CPU
/// page lists, <c>pcp</c>, and <c>zone->lock</c>), so concurrent faults do not contend on one free list.
/// </summary>
/// <remarks>
/// <para>
/// A CPU's cache is touched only by that CPU (its lock word is an uncontended atomic on a line the owner holds; another
/// CPU takes it only to drain the cache when memory runs out). An empty cache takes the zone lock once and moves
/// <see cref="PcpBatch"/> frames from the pool (Linux <c>rmqueue_bulk</c>, <c>pcp->batch</c>); a cache that reaches
/// <see cref="PcpHigh"/> frames gives <see cref="PcpBatch"/> back under the lock (<c>free_pcppages_bulk</c>). Linux's
/// hold time is dominated by one cache miss per <c>struct page</c> moved (list manipulation in the buddy lists); the
/// model's real-thread hold is what its copy of ints costs, and in virtual time each frame moved is one access to that
/// frame's metadata line through the seam (keyed by the memory and the PFN: Linux's <c>struct page</c>), so the simulated
/// hold grows with the batch as Linux's does.
/// </para>
/// <para>
/// The zone lock is a spinlock (<see cref="PtLock"/>, Linux's <c>spinlock_t</c>) in native memory, alone on its line,
/// taken as Linux takes it: with interrupts off (the spin serves no IPIs; its holder never waits for one). Its
/// acquisitions, contended acquisitions and spin time go to each CPU's counters (<see cref="LockCounters"/>). Code that
/// runs on no CPU (setup, callbacks; cpu = -1) uses the pool directly; such callers are serialised among themselves by
/// a host lock and then take the spinlock under one reserved owner id.
/// </para>
/// <para>
/// Transparent huge pages come from a reserve of 2 MiB-aligned blocks of 512 frames carved from the top of memory when
/// the allocator is built (<see cref="HugeBlocks"/>, <c>MachineOptions.HugePageReserve</c>), kept apart from the 4 KiB
/// pool so that 4 KiB allocations never fragment them. Linux allocates an order-9 page from the buddy lists
/// (compacting memory if it must, or failing: <c>thp_fault_fallback</c>); here a huge allocation pops a block under the
/// zone lock and fails when the reserve is empty. A freed huge page returns to the reserve as a block; a huge page
/// whose PMD is split becomes 512 ordinary frames (<see cref="Dissolve"/>) and its frames return to the 4 KiB pool one
/// by one, so the reserve only shrinks. Free frames of the reserve are in the <see cref="FrameState.Free"/> state and
/// counted by <see cref="FreeFrames"/>, so the census still balances.
/// </para>
/// </remarks>
internal sealed unsafe class FrameAllocator : IDisposable
{
    /// <summary>
    /// Linux's <c>pcp->batch</c> for any zone over 256 MiB: mm/page_alloc.c <c>zone_batchsize</c> takes
    /// min(managed pages / 1024, 1 MiB of pages) / 4 = 64, then <c>rounddown_pow_of_two(64 + 32) - 1</c> = 63.
    /// </summary>
    internal const int DefaultPcpBatch = 63;

    /// <summary>
    /// <c>pcp->high</c>: 6 × batch = 378, the fixed rule of mm/page_alloc.c before 5.14 (<c>new_high = 6 * new_batch</c>
    /// in <c>zone_set_pageset_high_and_batch</c>). Since 5.14 <c>zone_highsize</c> splits the zone's low watermark over
    /// the node's CPUs with a floor of 4 × batch (252), which lands in the same few hundred pages on a server (Mel Gorman's
    /// example in that series: 378 before, 649 after); 6.7+ then tunes it between <c>high_min</c> and <c>high_max</c>.
    /// </summary>
    internal const int DefaultPcpHigh = 6 * DefaultPcpBatch;

    /// <summary>The largest batch or high accepted (a cache's native array is <see cref="PcpHigh"/> ints).</summary>
    internal const int MaxPcp = 1 << 20;

    /// <summary>Frames in a huge page (2 MiB / 4 KiB; Linux <c>HPAGE_PMD_NR</c>).</summary>
    internal const int HugeFrames = 512;

    private readonly PhysicalMemory _memory;
    private readonly PerCpu<Cache> _caches;
    private readonly int _batch;
    private readonly int _high;
    private readonly int[] _pool;
    private readonly PerCpu<Stats> _stats;
    private readonly LockCounters _lockCounters;
    private readonly Lock _noCpuLock = new();
    private readonly int _noCpuOwner;
    private readonly int[] _hugePool;
    private readonly int _hugeBlocks;

    // Two lines in native memory: the zone lock (and its waiter count) on the first, the free list's head and count on
    // the second.
    private byte* _zone;
    private int _poolCount;
    private int _hugeCount;
    private long _poolAllocs;
    private long _poolFrees;

    /// <summary>Creates an allocator over every frame of <paramref name="memory"/> except frame 0 (kept as a guard).</summary>
    /// <param name="memory">The physical memory.</param>
    /// <param name="cpuCount">The number of CPUs with caches.</param>
    public FrameAllocator(PhysicalMemory memory, int cpuCount)
        : this(memory, cpuCount, DefaultPcpBatch, DefaultPcpHigh, default, 0)
    {
    }

    /// <summary>
    /// Creates an allocator with a given per-CPU batch and high mark and <paramref name="hugeBlocks"/> 2 MiB blocks
    /// reserved for huge pages, recording zone-lock statistics in <paramref name="counters"/>.
    /// </summary>
    internal FrameAllocator(PhysicalMemory memory, int cpuCount, int pcpBatch, int pcpHigh, LockCounters counters, int hugeBlocks)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentOutOfRangeException.ThrowIfLessThan(pcpBatch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(pcpHigh, pcpBatch);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(pcpHigh, MaxPcp);
        ArgumentOutOfRangeException.ThrowIfNegative(hugeBlocks);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(hugeBlocks, MaxHugeBlocks(memory.FrameCount));
        _memory = memory;
        _batch = pcpBatch;
        _high = pcpHigh;
        _lockCounters = counters;
        _noCpuOwner = cpuCount;
        _caches = new PerCpu<Cache>(cpuCount);
        _stats = new PerCpu<Stats>(cpuCount);
        for (int i = 0; i < cpuCount; i++)
        {
            _caches[i].Frames = (int*)NativeMemory.AlignedAlloc((nuint)(pcpHigh * sizeof(int)), CacheLine.Size);
        }

        _zone = (byte*)NativeMemory.AlignedAlloc(2 * CacheLine.Size, CacheLine.Size);
        NativeMemory.Clear(_zone, 2 * CacheLine.Size);
        _pool = new int[memory.FrameCount];

        // Frame 0 stays reserved (state PageTable-like "never free") so that a zero PFN in a PTE is always a bug.
        memory.Frame(0).State = FrameState.PageTable;
        memory.Frame(0).Owner = -1;

        // The huge-page reserve: the highest whole 2 MiB-aligned blocks, lowest first on the stack's top so that the
        // first huge page is the lowest block (any order would do; this one is easy to read in a test).
        _hugeBlocks = hugeBlocks;
        _hugePool = new int[hugeBlocks];
        int firstReserved = ((memory.FrameCount / HugeFrames) - hugeBlocks) * HugeFrames;
        for (int b = hugeBlocks - 1; b >= 0; b--)
        {
            _hugePool[_hugeCount++] = firstReserved + (b * HugeFrames);
        }

        int poolTop = hugeBlocks == 0 ? memory.FrameCount : firstReserved;
        for (int pfn = memory.FrameCount - 1; pfn >= 1; pfn--)
        {
            if (pfn < poolTop || pfn >= firstReserved + (hugeBlocks * HugeFrames))
            {
                _pool[_poolCount++] = pfn;
            }
        }
    }

    /// <summary>
    /// The most 2 MiB blocks a memory of <paramref name="frameCount"/> frames can reserve for huge pages: every whole
    /// aligned block but the first (frame 0 is never allocated, and the 4 KiB pool keeps at least that block's frames).
    /// </summary>
    internal static int MaxHugeBlocks(long frameCount) => (int)Math.Max(0, (frameCount / HugeFrames) - 1);

    /// <summary>2 MiB blocks reserved for huge pages when the allocator was built (<c>MachineOptions.HugePageReserve</c>).</summary>
    public int HugeBlocks => _hugeBlocks;

    /// <summary>Free blocks left in the huge-page reserve (a racy snapshot; exact when the machine is quiet).</summary>
    public int FreeHugeBlocks => Volatile.Read(ref _hugeCount);

    /// <summary>The memory this allocator serves.</summary>
    public PhysicalMemory Memory => _memory;

    /// <summary>Frames moved between a CPU's cache and the pool under the zone lock at a time (Linux <c>pcp->batch</c>).</summary>
    public int PcpBatch => _batch;

    /// <summary>Frames a CPU's cache may hold before it gives a batch back (Linux <c>pcp->high</c>).</summary>
    public int PcpHigh => _high;

    /// <summary>The zone lock (Linux <c>zone->lock</c>), by reference: alone on the first native line.</summary>
    private ref PtLock ZoneLock => ref *(PtLock*)_zone;

    /// <summary>The free list's line (its head and count in Linux's <c>free_area</c>), for the seam.</summary>
    private void* PoolLine => _zone + CacheLine.Size;

    /// <summary>Frames allocated so far (all CPUs and the pool).</summary>
    public long Allocated
    {
        get
        {
            // Racy statistics: each counter is read whole; the sum is a snapshot, not a consistent cut.
            long sum = Volatile.Read(ref _poolAllocs);
            for (int i = 0; i < _stats.Count; i++)
            {
                sum += Volatile.Read(ref _stats[i].Allocs);
            }

            return sum;
        }
    }

    /// <summary>Frames freed so far (all CPUs and the pool).</summary>
    public long Freed
    {
        get
        {
            // Racy statistics, as Allocated.
            long sum = Volatile.Read(ref _poolFrees);
            for (int i = 0; i < _stats.Count; i++)
            {
                sum += Volatile.Read(ref _stats[i].Frees);
            }

            return sum;
        }
    }

    /// <summary>Allocates a frame and sets its state; returns -1 when memory is exhausted.</summary>
    /// <param name="cpu">The allocating CPU's id, or -1 for code running on no CPU.</param>
    /// <param name="state">The state to give the frame (not <see cref="FrameState.Free"/>).</param>
    public long TryAllocate(int cpu, FrameState state)
    {
        long pfn;
        if (cpu < 0)
        {
            pfn = PoolPop();
            if (pfn >= 0)
            {
                Interlocked.Increment(ref _poolAllocs); // Statistics only: shared by every CPU-less caller.
            }
        }
        else
        {
            ref Cache cache = ref _caches[cpu];
            LockCache(ref cache);
            if (cache.Count == 0 && !Refill(cpu, ref cache))
            {
                UnlockCache(ref cache);

                // The pool is empty, but other CPUs' caches may still hold free frames (an idle CPU keeps its
                // cache): drain them into the pool and try once more, as Linux drains the per-CPU lists before
                // declaring out of memory.
                if (DrainOtherCaches(cpu) == 0)
                {
                    return -1;
                }

                LockCache(ref cache);
                if (cache.Count == 0 && !Refill(cpu, ref cache))
                {
                    UnlockCache(ref cache);
                    return -1;
                }
            }

            pfn = cache.Frames[--cache.Count];
            UnlockCache(ref cache);
            _stats[cpu].Allocs++;
        }

        if (pfn >= 0)
        {
            ref PageFrame frame = ref _memory.FrameUnchecked(pfn);
            frame.MapCount = 0;
            frame.Flags = 0;
            frame.Owner = 0;
            frame.Index = 0;
            frame.TlbCpus = 0;
            frame.LruState = 0; // LruVec's None (every path that frees a page leaves it so; this makes it certain).

            // Release: the reset metadata is visible before the state says the frame is in use (census readers).
            frame.WriteState(state);
        }

        return pfn;
    }

    /// <summary>Allocates a frame or throws <see cref="OutOfFramesException"/>.</summary>
    /// <param name="cpu">The allocating CPU's id, or -1.</param>
    /// <param name="state">The state to give the frame.</param>
    public long Allocate(int cpu, FrameState state)
    {
        long pfn = TryAllocate(cpu, state);
        return pfn >= 0 ? pfn : throw new OutOfFramesException();
    }

    /// <summary>Returns a frame to the free state.</summary>
    /// <param name="cpu">The freeing CPU's id, or -1.</param>
    /// <param name="pfn">The frame.</param>
    public void Free(int cpu, long pfn)
    {
        ref PageFrame frame = ref _memory.Frame(pfn);
        if (pfn == 0)
        {
            throw new ArgumentOutOfRangeException(nameof(pfn), pfn, "Frame 0 is reserved and never allocated.");
        }

        if (frame.ReadState() == FrameState.Free)
        {
            throw new InvalidOperationException($"Double free of frame {pfn}.");
        }

        if ((frame.Flags & (int)(PageFrameFlags.CompoundHead | PageFrameFlags.CompoundTail)) != 0)
        {
            FreeHuge(cpu, pfn);
            return;
        }

        frame.WriteState(FrameState.Free);
        if (cpu < 0)
        {
            PoolPush((int)pfn);
            Interlocked.Increment(ref _poolFrees); // Statistics only: shared by every CPU-less caller.
            return;
        }

        ref Cache cache = ref _caches[cpu];
        LockCache(ref cache);
        if (cache.Count >= _high)
        {
            Drain(cpu, ref cache);
        }

        cache.Frames[cache.Count++] = (int)pfn;
        UnlockCache(ref cache);
        _stats[cpu].Frees++;
    }

    /// <summary>
    /// Allocates a 2 MiB huge page: 512 contiguous frames from a 2 MiB-aligned PFN, all in <paramref name="state"/>, the
    /// first marked <see cref="PageFrameFlags.CompoundHead"/> and the rest <see cref="PageFrameFlags.CompoundTail"/>.
    /// Returns the first frame's PFN, or -1 when the reserve is empty (Linux then falls back to 4 KiB pages and counts
    /// <c>thp_fault_fallback</c>). Free it with <see cref="Free"/> on the head.
    /// </summary>
    /// <param name="cpu">The allocating CPU's id, or -1.</param>
    /// <param name="state">The state to give the frames (not <see cref="FrameState.Free"/>).</param>
    internal long TryAllocateHuge(int cpu, FrameState state)
    {
        int head = -1;
        if (Volatile.Read(ref _hugeCount) == 0)
        {
            return -1; // Racy early out: an empty reserve stays empty but for frees, which a miss here only delays.
        }

        EnterZone(cpu);
        VirtualTime.Access(PoolLine, LineAccess.Store); // The free list's head and count (Linux's order-9 free_area).
        if (_hugeCount > 0)
        {
            head = _hugePool[--_hugeCount];
        }

        ExitZone(cpu);
        if (cpu < 0)
        {
            if (head >= 0)
            {
                Interlocked.Add(ref _poolAllocs, HugeFrames); // Statistics only.
            }
        }
        else if (head >= 0)
        {
            _stats[cpu].Allocs += HugeFrames;
        }

        if (head < 0)
        {
            return -1;
        }

        // prep_compound_page: every struct page of the folio is written (the tails point at the head).
        for (int i = 0; i < HugeFrames; i++)
        {
            ref PageFrame frame = ref _memory.FrameUnchecked(head + i);
            VirtualTime.Access(_memory, head + i, LineAccess.Store);
            frame.MapCount = 0;
            frame.Flags = (int)(i == 0 ? PageFrameFlags.CompoundHead : PageFrameFlags.CompoundTail);
            frame.Owner = 0;
            frame.Index = 0;
            frame.TlbCpus = 0;
            frame.LruState = 0;

            // Release: the reset metadata is visible before the state says the frame is in use (census readers).
            frame.WriteState(state);
        }

        return head;
    }

    /// <summary>
    /// Makes the huge page at <paramref name="head"/> 512 ordinary frames (Linux <c>split_huge_page</c>): they keep their
    /// states and are freed one by one into the 4 KiB pool. The caller owns the page (its PMD was just split under the
    /// PMD lock).
    /// </summary>
    internal void Dissolve(long head)
    {
        for (int i = 0; i < HugeFrames; i++)
        {
            ref PageFrame frame = ref _memory.FrameUnchecked(head + i);
            frame.Flags &= ~(int)(PageFrameFlags.CompoundHead | PageFrameFlags.CompoundTail);
        }

        _memory.FrameUnchecked(head).Index = 0;
    }

    /// <summary>Returns a whole huge page to the reserve (<see cref="Free"/> of a compound head).</summary>
    private void FreeHuge(int cpu, long head)
    {
        if ((_memory.FrameUnchecked(head).Flags & (int)PageFrameFlags.CompoundHead) == 0 || (head % HugeFrames) != 0)
        {
            throw new InvalidOperationException($"Frame {head} is a tail of a huge page: free the huge page by its head.");
        }

        for (int i = 0; i < HugeFrames; i++)
        {
            ref PageFrame frame = ref _memory.FrameUnchecked(head + i);
            frame.Flags = 0;
            frame.WriteState(FrameState.Free); // Release, as in Free: the cleared flags are visible first.
        }

        EnterZone(cpu);
        VirtualTime.Access(PoolLine, LineAccess.Store);
        _hugePool[_hugeCount++] = (int)head;
        ExitZone(cpu);
        if (cpu < 0)
        {
            Interlocked.Add(ref _poolFrees, HugeFrames); // Statistics only.
        }
        else
        {
            _stats[cpu].Frees += HugeFrames;
        }
    }

    /// <summary>Takes the zone lock as CPU <paramref name="cpu"/>, or, for code on no CPU (-1), as the reserved owner after the host lock.</summary>
    private void EnterZone(int cpu)
    {
        if (cpu >= 0)
        {
            LockZone(cpu);
            return;
        }

        _noCpuLock.Enter();
        ZoneLock.Lock(_noCpuOwner, null);
    }

    /// <summary>Releases what <see cref="EnterZone"/> took.</summary>
    private void ExitZone(int cpu)
    {
        if (cpu >= 0)
        {
            ZoneLock.Unlock(cpu);
            return;
        }

        ZoneLock.Unlock(_noCpuOwner);
        _noCpuLock.Exit();
    }

    /// <summary>Frames in the global pool plus every CPU cache (a racy snapshot).</summary>
    public long FreeFrames
    {
        get
        {
            // Racy snapshots of the pool's and the huge reserve's counts (written under the zone lock); exact when the
            // machine is quiet. The reserve's free blocks are free frames too.
            long sum = Volatile.Read(ref _poolCount) + ((long)Volatile.Read(ref _hugeCount) * HugeFrames);

            for (int i = 0; i < _caches.Count; i++)
            {
                sum += Volatile.Read(ref _caches[i].Count); // Racy snapshot of another CPU's cache size.
            }

            return sum;
        }
    }

    /// <summary>
    /// Takes a CPU cache's lock. The owner is the only regular user, so this is an uncontended atomic on a line the
    /// owner already holds; another CPU takes it only to drain the cache when memory runs out.
    /// </summary>
    private static void LockCache(ref Cache cache)
    {
        // Exchange (full fence): claims the cache; the frames and count read after it are the ones the last holder
        // published with its release below.
        Backoff backoff = Backoff.ForLock();
        while (Interlocked.Exchange(ref cache.Lock, 1) != 0)
        {
            if (VirtualTime.Current is { } sim)
            {
                sim.Relax(); // A simulated CPU waits in virtual time: the holder runs only when this CPU yields.
            }
            else
            {
                backoff.SpinOrYield(null); // The library's spin policy; the holder may be a preempted host thread.
            }
        }
    }

    private static void UnlockCache(ref Cache cache) =>
        Volatile.Write(ref cache.Lock, 0); // Release: the cache's frames and count are visible to the next holder.

    /// <summary>Moves every frame cached by CPUs other than <paramref name="self"/> to the pool; returns how many.</summary>
    private int DrainOtherCaches(int self)
    {
        int moved = 0;
        for (int other = 0; other < _caches.Count; other++)
        {
            if (other == self)
            {
                continue;
            }

            ref Cache cache = ref _caches[other];
            LockCache(ref cache);
            LockZone(self);
            VirtualTime.Access(PoolLine, LineAccess.Store);
            while (cache.Count > 0)
            {
                int pfn = cache.Frames[--cache.Count];
                TouchFrame(pfn);
                _pool[_poolCount++] = pfn;
                moved++;
            }

            ZoneLock.Unlock(self);
            UnlockCache(ref cache);
        }

        return moved;
    }

    /// <summary>
    /// Takes the zone lock as CPU <paramref name="cpu"/> (irqs off: the spin serves no IPIs) and records the acquisition.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void LockZone(int cpu)
    {
        if (ZoneLock.TryLock(cpu))
        {
            _lockCounters.Record(cpu, false, 0);
            return;
        }

        LockZoneSlow(cpu);
    }

    /// <summary>
    /// The contended path: counts itself in the waiter count next to the lock word (the analogue of qspinlock's
    /// pending bit and tail, which contended waiters write in Linux's lock word too), then spins.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void LockZoneSlow(int cpu)
    {
        // Atomic: every waiter writes it; tests read it to know a CPU is spinning here (ParkedFault). No ordering is
        // needed beyond that: it guards nothing.
        VirtualTime.Access(_zone, LineAccess.Rmw);
        Interlocked.Increment(ref ZoneWaitersWord);
        long waited = ZoneLock.LockTimed(cpu, null);
        VirtualTime.Access(_zone, LineAccess.Rmw);
        Interlocked.Decrement(ref ZoneWaitersWord);
        _lockCounters.Record(cpu, true, Math.Max(1, waited));
    }

    /// <summary>CPUs spinning for the zone lock now (a racy snapshot, for tests).</summary>
    internal int ZoneWaiters => Volatile.Read(ref ZoneWaitersWord);

    /// <summary>Takes the zone lock from a thread that is no CPU, closing the pool until <see cref="OpenZone"/> (tests that park a refill).</summary>
    internal void CloseZone()
    {
        _noCpuLock.Enter();
        ZoneLock.Lock(_noCpuOwner, null);
    }

    /// <summary>Releases what <see cref="CloseZone"/> took, on the same thread.</summary>
    internal void OpenZone()
    {
        ZoneLock.Unlock(_noCpuOwner);
        _noCpuLock.Exit();
    }

    private ref int ZoneWaitersWord => ref *(int*)(_zone + sizeof(int));

    /// <summary>
    /// The per-frame cost inside the zone lock: Linux's list manipulation misses once per <c>struct page</c> moved. In
    /// virtual time that is one store to the frame's metadata line through the seam; in real time nothing is added (the
    /// model's pool holds PFNs, and an artificial spin would only make the host's cost dishonest).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void TouchFrame(int pfn) => VirtualTime.Access(_memory, pfn, LineAccess.Store);

    /// <summary>What the native line at <paramref name="p"/> holds, if it is one of the zone's (the simulator's line labels).</summary>
    internal string? LineLabel(byte* p) =>
        p >= _zone && p < _zone + CacheLine.Size ? "zone->lock" : p >= _zone + CacheLine.Size && p < _zone + (2 * CacheLine.Size) ? "zone free list" : null;

    /// <summary>Moves up to <see cref="PcpBatch"/> frames from the pool into an empty cache (Linux <c>rmqueue_bulk</c>).</summary>
    private bool Refill(int cpu, ref Cache cache)
    {
        LockZone(cpu);
        VirtualTime.Access(PoolLine, LineAccess.Store); // The free list's head and count.
        int n = Math.Min(_batch, _poolCount);
        for (int i = 0; i < n; i++)
        {
            int pfn = _pool[--_poolCount];
            TouchFrame(pfn);
            cache.Frames[cache.Count++] = pfn;
        }

        ZoneLock.Unlock(cpu);
        return n > 0;
    }

    /// <summary>Gives <see cref="PcpBatch"/> frames of a cache at its high mark back to the pool (Linux <c>free_pcppages_bulk</c>).</summary>
    private void Drain(int cpu, ref Cache cache)
    {
        LockZone(cpu);
        VirtualTime.Access(PoolLine, LineAccess.Store);
        for (int i = 0; i < _batch; i++)
        {
            int pfn = cache.Frames[--cache.Count];
            TouchFrame(pfn);
            _pool[_poolCount++] = pfn;
        }

        ZoneLock.Unlock(cpu);
    }

    private long PoolPop()
    {
        lock (_noCpuLock)
        {
            ZoneLock.Lock(_noCpuOwner, null);
            VirtualTime.Access(PoolLine, LineAccess.Store);
            long pfn = _poolCount == 0 ? -1 : _pool[--_poolCount];
            ZoneLock.Unlock(_noCpuOwner);
            return pfn;
        }
    }

    private void PoolPush(int pfn)
    {
        lock (_noCpuLock)
        {
            ZoneLock.Lock(_noCpuOwner, null);
            VirtualTime.Access(PoolLine, LineAccess.Store);
            _pool[_poolCount++] = pfn;
            ZoneLock.Unlock(_noCpuOwner);
        }
    }

    /// <summary>Frees the per-CPU caches' native storage and the zone's lines.</summary>
    public void Dispose()
    {
        byte* zone = _zone;
        _zone = null;
        if (zone == null)
        {
            return;
        }

        for (int i = 0; i < _caches.Count; i++)
        {
            NativeMemory.AlignedFree(_caches[i].Frames);
            _caches[i].Frames = null;
        }

        NativeMemory.AlignedFree(zone);
        _caches.Dispose();
        _stats.Dispose();
    }

    private struct Cache
    {
        public int Lock;
        public int Count;
        public int* Frames;
    }

    private struct Stats
    {
        public long Allocs;
        public long Frees;
    }
}
