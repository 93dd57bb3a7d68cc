using System.Runtime.CompilerServices;
using SpecVm.Sync;

namespace SpecVm.Memory;

/// <summary>
/// Hands out frames from per-CPU caches refilled in batches from one global pool (Linux's per-CPU page lists,
/// <c>pcp</c>), so concurrent faults do not contend on one free list.
/// </summary>
/// <remarks>
/// A CPU's cache is touched only by that CPU (no atomics). The global pool is a stack under a lock, taken once per
/// <see cref="Batch"/> frames. Code that runs on no CPU (setup, callbacks) passes cpu = -1 and uses the pool directly.
/// </remarks>
public sealed unsafe class FrameAllocator : IDisposable
{
    /// <summary>Frames one CPU may cache.</summary>
    public const int CacheCapacity = 64;

    /// <summary>Frames moved between a cache and the pool at a time (Linux's <c>pcp->batch</c> is 31 or 63).</summary>
    public const int Batch = 32;

    private readonly PhysicalMemory _memory;
    private readonly PerCpu<Cache> _caches;
    private readonly object _poolLock = new();
    private readonly int[] _pool;
    private int _poolCount;
    private readonly PerCpu<Stats> _stats;
    private long _poolAllocs;
    private long _poolFrees;

    /// <summary>Creates an allocator over every frame of <paramref name="memory"/> except frame 0 (kept as a guard).</summary>
    /// <param name="memory">The physical memory.</param>
    /// <param name="cpuCount">The number of CPUs with caches.</param>
    public FrameAllocator(PhysicalMemory memory, int cpuCount)
    {
        ArgumentNullException.ThrowIfNull(memory);
        _memory = memory;
        _caches = new PerCpu<Cache>(cpuCount);
        _stats = new PerCpu<Stats>(cpuCount);
        _pool = new int[memory.FrameCount];

        // Frame 0 stays reserved (state PageTable-like "never free") so that a zero PFN in a PTE is always a bug.
        memory.Frame(0).State = FrameState.PageTable;
        memory.Frame(0).Owner = -1;
        for (int pfn = memory.FrameCount - 1; pfn >= 1; pfn--)
        {
            _pool[_poolCount++] = pfn;
        }
    }

    /// <summary>The memory this allocator serves.</summary>
    public PhysicalMemory Memory => _memory;

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
            if (cache.Count == 0 && !Refill(ref cache))
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
                if (cache.Count == 0 && !Refill(ref cache))
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

        frame.WriteState(FrameState.Free);
        if (cpu < 0)
        {
            PoolPush((int)pfn);
            Interlocked.Increment(ref _poolFrees); // Statistics only: shared by every CPU-less caller.
            return;
        }

        ref Cache cache = ref _caches[cpu];
        LockCache(ref cache);
        if (cache.Count == CacheCapacity)
        {
            Drain(ref cache);
        }

        cache.Frames[cache.Count++] = (int)pfn;
        UnlockCache(ref cache);
        _stats[cpu].Frees++;
    }

    /// <summary>Frames in the global pool plus every CPU cache (a racy snapshot).</summary>
    public long FreeFrames
    {
        get
        {
            long sum;
            lock (_poolLock)
            {
                sum = _poolCount;
            }

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
        while (Interlocked.Exchange(ref cache.Lock, 1) != 0)
        {
            if (VirtualTime.Current is { } sim)
            {
                sim.Relax(); // A simulated CPU waits in virtual time: the holder runs only when this CPU yields.
            }
            else
            {
                CpuRelax.Pause();
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
            lock (_poolLock)
            {
                while (cache.Count > 0)
                {
                    _pool[_poolCount++] = cache.Frames[--cache.Count];
                    moved++;
                }
            }

            UnlockCache(ref cache);
        }

        return moved;
    }

    private bool Refill(ref Cache cache)
    {
        VirtualTime.Access(this, 0, LineAccess.Rmw); // The pool's lock line (priced before the host lock is taken).
        lock (_poolLock)
        {
            int n = Math.Min(Batch, _poolCount);
            for (int i = 0; i < n; i++)
            {
                cache.Frames[cache.Count++] = _pool[--_poolCount];
            }

            return n > 0;
        }
    }

    private void Drain(ref Cache cache)
    {
        VirtualTime.Access(this, 0, LineAccess.Rmw);
        lock (_poolLock)
        {
            for (int i = 0; i < Batch; i++)
            {
                _pool[_poolCount++] = cache.Frames[--cache.Count];
            }
        }
    }

    private long PoolPop()
    {
        lock (_poolLock)
        {
            return _poolCount == 0 ? -1 : _pool[--_poolCount];
        }
    }

    private void PoolPush(int pfn)
    {
        lock (_poolLock)
        {
            _pool[_poolCount++] = pfn;
        }
    }

    /// <summary>Frees the per-CPU caches' native storage.</summary>
    public void Dispose()
    {
        _caches.Dispose();
        _stats.Dispose();
    }

    private struct Cache
    {
        public int Lock;
        public int Count;
        public fixed int Frames[CacheCapacity];
    }

    private struct Stats
    {
        public long Allocs;
        public long Frees;
    }
}
