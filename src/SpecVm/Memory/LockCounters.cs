namespace SpecVm.Memory;

/// <summary>
/// Where one of the memory-management locks (<see cref="FrameAllocator"/>'s zone lock, <see cref="LruVec"/>'s
/// <c>lru_lock</c>, <see cref="MemCgroup"/>'s counter walks) records its statistics: three consecutive 64-bit counters
/// in each CPU's own counter block — acquisitions, contended acquisitions, and ticks waited — whose position the
/// machine chooses (it owns the counter names; this namespace cannot see them). The default value records nothing.
/// </summary>
/// <remarks>
/// Owner-only plain increments, as every per-CPU counter: a CPU records only in its own block, and readers on other
/// threads take racy but untorn snapshots. Callers running on no CPU (cpu -1) record nothing.
/// </remarks>
internal readonly unsafe struct LockCounters
{
    private readonly long* _base;
    private readonly int _stride;
    private readonly int _first;

    /// <summary>Counters at index <paramref name="first"/> of blocks of <paramref name="stride"/> longs from <paramref name="blocks"/>.</summary>
    /// <param name="blocks">CPU 0's counter block.</param>
    /// <param name="stride">The distance between two CPUs' blocks, in longs.</param>
    /// <param name="first">The index of the acquisitions counter; contentions and wait ticks follow it.</param>
    public LockCounters(long* blocks, int stride, int first)
    {
        _base = blocks;
        _stride = stride;
        _first = first;
    }

    /// <summary>Records one acquisition by <paramref name="cpu"/>; <paramref name="waited"/> ticks (0: none) and whether it was contended.</summary>
    /// <param name="cpu">The CPU, or -1 (nothing is recorded).</param>
    /// <param name="contended">True when the acquisition had to wait (or, for memcg, was refused).</param>
    /// <param name="waited">Stopwatch ticks (virtual ticks in virtual time) spent waiting.</param>
    public void Record(int cpu, bool contended, long waited)
    {
        if (_base == null || cpu < 0)
        {
            return;
        }

        long* c = _base + ((nint)cpu * _stride) + _first;
        c[0]++;
        if (contended)
        {
            c[1]++;
        }

        c[2] += waited;
    }
}
