using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace SpecVm.Smp;

/// <summary>What a CPU waited for, in the wait histograms (<see cref="WaitHistogram"/>).</summary>
public enum WaitKind
{
    /// <summary>The mmap lock, for read (a fault behind a writer: Linux <c>down_read</c>).</summary>
    MmapRead,

    /// <summary>The mmap lock, for write (a system call behind readers or another writer: <c>down_write</c>).</summary>
    MmapWrite,

    /// <summary>A page-table lock (split PTL, <c>spin_lock(ptl)</c>), spinning.</summary>
    Ptl,

    /// <summary>TLB shootdown acknowledgements: the initiator waiting for every target to flush.</summary>
    ShootdownAck,
}

/// <summary>
/// Wait-time histograms in decade buckets — under 1 µs, 1–10 µs, 10–100 µs, 100 µs–1 ms, 1–10 ms, 10 ms or more — as in
/// the mmap_lock wait histograms kernel reviewers ask for. Each <see cref="WaitKind"/> is six per-CPU counters
/// (<see cref="CpuCounter.MmapReadWaitUnder1us"/> onwards) plus one of total ticks; the waiting CPU bumps its own
/// (owner-only, plain increments, no allocation), and only on a slow path that waited: the uncontended fast path of
/// every lock reads no clock. Clock reads go through the virtual-time seam, so the histograms hold virtual time in a
/// virtual-time run.
/// </summary>
public static class WaitHistogram
{
    /// <summary>Buckets per kind.</summary>
    public const int BucketCount = 6;

    /// <summary>Counters per kind: the buckets, then the total ticks.</summary>
    private const int Stride = BucketCount + 1;

    // Lower bounds of buckets 1..5 in Stopwatch ticks: 1 µs, 10 µs, 100 µs, 1 ms, 10 ms (the frequency is 1 GHz on
    // Linux, 10 MHz on Windows: computed, not assumed).
    private static readonly long Bound1 = Stopwatch.Frequency / 1_000_000;
    private static readonly long Bound2 = Stopwatch.Frequency / 100_000;
    private static readonly long Bound3 = Stopwatch.Frequency / 10_000;
    private static readonly long Bound4 = Stopwatch.Frequency / 1_000;
    private static readonly long Bound5 = Stopwatch.Frequency / 100;

    /// <summary>The bucket labels, shortest first ("&lt;1 µs" … "≥10 ms").</summary>
    public static IReadOnlyList<string> BucketLabels { get; } = ["<1 µs", "1-10 µs", "10-100 µs", "100 µs-1 ms", "1-10 ms", ">=10 ms"];

    /// <summary>Every kind, in counter order.</summary>
    public static IReadOnlyList<WaitKind> Kinds { get; } = [WaitKind.MmapRead, WaitKind.MmapWrite, WaitKind.Ptl, WaitKind.ShootdownAck];

    /// <summary>The kind's name in results (camelCase: "mmapRead", "mmapWrite", "ptl", "shootdownAck").</summary>
    /// <param name="kind">The kind.</param>
    public static string Name(WaitKind kind) => kind switch
    {
        WaitKind.MmapRead => "mmapRead",
        WaitKind.MmapWrite => "mmapWrite",
        WaitKind.Ptl => "ptl",
        WaitKind.ShootdownAck => "shootdownAck",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown wait kind."),
    };

    /// <summary>The counter of one bucket of one kind.</summary>
    /// <param name="kind">The kind.</param>
    /// <param name="bucket">0 (under 1 µs) to <see cref="BucketCount"/> - 1 (10 ms or more).</param>
    public static CpuCounter Counter(WaitKind kind, int bucket)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bucket);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(bucket, BucketCount);
        return First(kind) + bucket;
    }

    /// <summary>The counter of one kind's total wait time, in Stopwatch ticks.</summary>
    /// <param name="kind">The kind.</param>
    public static CpuCounter TicksCounter(WaitKind kind) => First(kind) + BucketCount;

    /// <summary>The bucket a wait of <paramref name="ticks"/> Stopwatch ticks falls in.</summary>
    /// <param name="ticks">The wait.</param>
    public static int Bucket(long ticks) =>
        ticks < Bound1 ? 0 : ticks < Bound2 ? 1 : ticks < Bound3 ? 2 : ticks < Bound4 ? 3 : ticks < Bound5 ? 4 : 5;

    /// <summary>A bucket's representative wait in seconds (the geometric midpoint of its decade; 0.5 µs and 20 ms for the open ends).</summary>
    /// <param name="bucket">0 to <see cref="BucketCount"/> - 1.</param>
    public static double MidpointSeconds(int bucket)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bucket);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(bucket, BucketCount);
        return bucket switch
        {
            0 => 0.5e-6,
            5 => 20e-3,
            _ => Math.Sqrt(10) * Math.Pow(10, bucket - 1) * 1e-6,
        };
    }

    /// <summary>Records one wait on <paramref name="cpu"/>'s own counters (owner only: called on the CPU's thread).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static void Record(Cpu cpu, WaitKind kind, long ticks)
    {
        CpuCounter first = First(kind);
        cpu.Count(first + Bucket(ticks));
        cpu.Count(first + BucketCount, ticks);
    }

    private static CpuCounter First(WaitKind kind)
    {
        if ((uint)kind > (uint)WaitKind.ShootdownAck)
        {
            throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown wait kind.");
        }

        return CpuCounter.MmapReadWaitUnder1us + ((int)kind * Stride);
    }
}
