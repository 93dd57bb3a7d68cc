using System.Numerics;
using System.Runtime.CompilerServices;

namespace SpecVm.Sync;

/// <summary>
/// A statistics counter split into per-core stripes, each on its own cache line (the idea of Linux's
/// <c>percpu_counter</c> and of .NET's <c>ThreadPool</c> work counts): an increment is a locked add on the line of the
/// core the thread runs on, which that core usually owns already, instead of on a line every CPU shares.
/// </summary>
/// <remarks>
/// For counters that sit beside a hot synchronisation word (the mmap lock's read acquisitions): counting there would
/// make every reader write one more time to the line every reader contends on. Reading sums the stripes, so a read
/// while increments run is a snapshot, exact once they stop.
/// </remarks>
internal sealed class StripedCounter
{
    // Sixteen longs (128 bytes) between stripes: two stripes never share a line (nor an adjacent-line prefetch pair),
    // wherever the array starts; stripe 0 starts one stride in, clear of the array header.
    private const int Stride = 2 * CacheLine.Size / sizeof(long);

    private readonly long[] _slots;
    private readonly int _mask;

    public StripedCounter()
    {
        int stripes = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Clamp(Environment.ProcessorCount, 1, 64));
        _mask = stripes - 1;
        _slots = new long[(stripes + 1) * Stride];
    }

    /// <summary>Adds one on the current core's stripe.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Increment()
    {
        // Atomic although the stripe is per core: a thread preempted between load and store would otherwise lose the
        // increment of another thread that ran on the same core meanwhile. It orders nothing (statistics only).
        // GetCurrentProcessorId is the runtime's cached RDTSCP/RDPID value, a few nanoseconds; a stale id only means a
        // shared stripe, never a lost count.
        int stripe = (Thread.GetCurrentProcessorId() & _mask) + 1;
        Interlocked.Increment(ref _slots[stripe * Stride]);
    }

    /// <summary>The sum over the stripes.</summary>
    public long Sum()
    {
        long sum = 0;
        for (int i = Stride; i < _slots.Length; i += Stride)
        {
            sum += Volatile.Read(ref _slots[i]);
        }

        return sum;
    }
}
