namespace SpecVm.Sync;

/// <summary>The default of the Sync primitives' wait watchdogs (see <see cref="HungTaskException"/>).</summary>
internal static class Watchdog
{
    /// <summary>
    /// 30 s in a Debug build of SpecVm (longer than any legitimate wait in its tests and workloads, whose lock holds
    /// last milliseconds; short enough that a hung test fails instead of timing out the run); infinite in Release.
    /// </summary>
#if DEBUG
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(30);
#else
    public static readonly TimeSpan DefaultTimeout = Timeout.InfiniteTimeSpan;
#endif

    /// <summary>The timeout in <see cref="System.Diagnostics.Stopwatch"/> ticks, or <see cref="long.MaxValue"/> when infinite.</summary>
    internal static long ToTicks(TimeSpan timeout)
    {
        if (timeout == Timeout.InfiniteTimeSpan)
        {
            return long.MaxValue;
        }

        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero, "value");
        return (long)Math.Min(timeout.TotalSeconds * System.Diagnostics.Stopwatch.Frequency, long.MaxValue / 2);
    }
}
