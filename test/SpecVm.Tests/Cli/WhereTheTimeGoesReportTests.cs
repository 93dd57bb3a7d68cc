using System.Diagnostics;
using System.Globalization;
using SpecVm.Benchmarks.Reports;
using SpecVm.Mm;
using SpecVm.Scaling;
using SpecVm.Smp;

namespace SpecVm.Tests.Cli;

/// <summary>
/// The report's "Where the time goes" section: rates and fairness, the wait histograms at each series' largest thread
/// count, and the lost-throughput attribution, checked against numbers worked by hand.
/// </summary>
public class WhereTheTimeGoesReportTests
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    [Fact]
    public void TheReportShowsWaitHistogramsAndAttributesLostThroughput()
    {
        ScalingResult r = Result();
        string md = MarkdownReport.Build(r, []);

        Assert.Contains("## Where the time goes", md);
        Assert.Contains("### Rates and fairness", md);
        Assert.Contains("### Wait histograms", md);
        Assert.Contains("### Lost throughput, attributed (an estimate)", md);
        Assert.Contains($"| {string.Join(" | ", WaitHistogram.BucketLabels)} |", md);

        // Rates: linear 4 × 1,000; ops per CPU-second 2,000 / 4; min/max 400 / 600.
        Assert.Contains("| page-fault1 | speculative | 4 | measured | 2,000 | 4,000 | 50 % | 500 | 400 | 600 | 0.67 |", md);

        // Histograms at the largest thread count only, kinds with no waits left out (mmapWrite).
        Assert.Contains("| page-fault1 | speculative | 4 | measured | mmapRead | 0 | 0 | 10 | 20 | 5 | 0 | 400.0 |", md);
        Assert.Contains("| page-fault1 | speculative | 4 | measured | ptl | 40 | 0 | 0 | 0 | 0 | 0 | 40.0 |", md);
        Assert.DoesNotContain("| mmapWrite |", md);
        Assert.DoesNotContain("| page-fault1 | speculative | 1 | measured | mmapRead |", md);

        // CPU time 4 threads × 1 s. Lost: (4,000 − 2,000) / 4,000 = 50%. Read waits 0.4 s, write held 0.05 s × 4 threads
        // = 0.2 s behind writers (5%), the other 0.2 s contention (5%); PTL 0.04 s (1%); shootdown 0.08 s (2%);
        // aborted: 1,000 fallbacks × 1 s / 1,000 faults at 1 thread = 1 s (25%); rest 50 − 38 = 12%.
        string P(double v) => v.ToString("P1", Inv);
        Assert.Contains($"| page-fault1 | speculative | 4 | measured | {P(0.5)} | {P(0.05)} | {P(0.05)} | {P(0.01)} | {P(0.02)} | {P(0.25)} | {P(0.12)} |", md);
    }

    [Fact]
    public void AResultWrittenBeforeWaitHistogramsSaysSoAndStillShowsRates()
    {
        ScalingResult r = Result();
        foreach (ScalingPoint p in r.Points)
        {
            (p.WaitHistograms, p.WaitSeconds, p.Linear, p.PerThreadMin, p.PerThreadMax, p.OpsPerCpuSecond) = (null, null, null, null, null, null);
        }

        string md = MarkdownReport.Build(r, []);
        Assert.Contains("written before wait histograms were recorded", md);
        Assert.Contains("| page-fault1 | speculative | 4 | measured | 2,000 | 4,000 | 50 % | 500 | 400 | 600 | 0.67 |", md);
        Assert.DoesNotContain("### Lost throughput", md);
    }

    private static ScalingResult Result()
    {
        long Ticks(double seconds) => (long)Math.Round(seconds * Stopwatch.Frequency);
        var r = new ScalingResult();
        r.Settings.Strategies = ["speculative"];
        r.Settings.Workloads = ["page-fault1"];
        r.Settings.ThreadCounts = [1, 4];
        r.Points.Add(new ScalingPoint
        {
            Workload = "page-fault1", Strategy = "speculative", Mode = "measured", Threads = 1, OperationUnit = "fault",
            OpsPerSecond = 1000, OpsPerSecondMedian = 1000, RepeatOpsPerSecond = [1000], PerThreadOpsPerSecond = [1000], MeasuredSeconds = 1,
            PerThreadMin = 1000, PerThreadMax = 1000, OpsPerCpuSecond = 1000, Linear = 1000,
            WaitHistograms = Empty(), WaitSeconds = Zero(),
            Counters = new() { [nameof(CpuCounter.Faults)] = 1000 },
        });
        Dictionary<string, List<long>> h = Empty();
        h[WaitHistogram.Name(WaitKind.MmapRead)] = [0, 0, 10, 20, 5, 0];
        h[WaitHistogram.Name(WaitKind.Ptl)] = [40, 0, 0, 0, 0, 0];
        h[WaitHistogram.Name(WaitKind.ShootdownAck)] = [0, 8, 0, 0, 0, 0];
        Dictionary<string, double> s = Zero();
        s[WaitHistogram.Name(WaitKind.MmapRead)] = 0.4;
        s[WaitHistogram.Name(WaitKind.Ptl)] = 0.04;
        s[WaitHistogram.Name(WaitKind.ShootdownAck)] = 0.08;
        r.Points.Add(new ScalingPoint
        {
            Workload = "page-fault1", Strategy = "speculative", Mode = "measured", Threads = 4, OperationUnit = "fault",
            OpsPerSecond = 2000, OpsPerSecondMedian = 2000, RepeatOpsPerSecond = [2000], PerThreadOpsPerSecond = [400, 500, 500, 600], MeasuredSeconds = 1,
            PerThreadMin = 400, PerThreadMax = 600, OpsPerCpuSecond = 500, Linear = 4000,
            WaitHistograms = h, WaitSeconds = s,
            Counters = new()
            {
                [nameof(CpuCounter.Faults)] = 2000,
                [nameof(CpuCounter.MmapWriteHoldTicks)] = Ticks(0.05),
            },
            Outcomes = [new("success", FaultOutcomeKind.Success, 1000), new("abort: x", FaultOutcomeKind.Abort, 1000), new("fallback", FaultOutcomeKind.Fallback, 1000)],
        });
        r.Usl = ScalingExperiment.FitAll(r.Points);
        return r;
    }

    private static Dictionary<string, List<long>> Empty() =>
        WaitHistogram.Kinds.ToDictionary(WaitHistogram.Name, _ => new List<long>(new long[WaitHistogram.BucketCount]));

    private static Dictionary<string, double> Zero() => WaitHistogram.Kinds.ToDictionary(WaitHistogram.Name, _ => 0.0);
}
