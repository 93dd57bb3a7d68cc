using SpecVm.Benchmarks.Reports;
using SpecVm.Scaling;

namespace SpecVm.Tests.Cli;

/// <summary>
/// The report's "Physical floor" section (issue #14): each series as a fraction of the floor and the two targets,
/// checked against numbers worked by hand, so that a wrong formula fails.
/// </summary>
public class PhysicalFloorReportTests
{
    [Fact]
    public void TheReportShowsTheFloorEachSeriesAsAFractionOfItAndBothTargets()
    {
        string md = MarkdownReport.Build(Result(), []);

        Assert.Contains("## Physical floor", md);
        Assert.Contains("### page-fault1: physical floor (zeroing), 128 MiB per thread", md);
        Assert.Contains("| threads | floor, pages/s (± SD) | mmap-lock / floor | speculative / floor |", md);

        // Fractions: 500,000 / 1,000,000 and 800,000 / 1,000,000 at 1 thread; 800,000 / 1,800,000 and 1,500,000 / 1,800,000 at 2.
        Assert.Contains("| 1 | 1,000,000 ± 10,000 | 0.500 | 0.800 |", md);
        Assert.Contains("| 2 | 1,800,000 ± 0 | 0.444 | 0.833 |", md);
        Assert.Contains("Floor at 1 thread: 1,000,000 pages/s, 1000 ns to zero one page.", md);

        // 1-CPU fault time / zero time = floor ops/s / fault ops/s: 2.0 (2000 ns vs 1000 ns) missed, 1.25 met.
        Assert.Contains("| 1-CPU fault time / one page's zero time | mmap-lock | ≤ 1.5 | 2.000 (2000 ns per page touched vs 1000 ns) | missed |", md);
        Assert.Contains("| 1-CPU fault time / one page's zero time | speculative | ≤ 1.5 | 1.250 (1250 ns per page touched vs 1000 ns) | met |", md);

        // Speedup over the floor's: (800,000 / 500,000) / 1.8 = 0.889 missed; (1,500,000 / 800,000) / 1.8 = 1.042 met.
        Assert.Contains("| speedup 1→2 / floor's speedup | mmap-lock | ≥ 0.95 | 0.889 (1.60× vs 1.80×) | missed |", md);
        Assert.Contains("| speedup 1→2 / floor's speedup | speculative | ≥ 0.95 | 1.042 (1.88× vs 1.80×) | met |", md);
    }

    [Fact]
    public void ACopyingFloorIsNamedSoAndAResultWithoutFloorsHasNoSection()
    {
        ScalingResult r = Result();
        foreach (FloorPoint f in r.Floors!)
        {
            f.Kind = "copy";
        }

        string md = MarkdownReport.Build(r, []);
        Assert.Contains("physical floor (copying)", md);
        Assert.Contains("| 1-CPU fault time / one page's copy time | speculative |", md);

        r.Floors = null;
        Assert.DoesNotContain("## Physical floor", MarkdownReport.Build(r, []));
    }

    [Fact]
    public void ThePlotsDrawTheFloor()
    {
        using var dir = new TempDir();
        IReadOnlyList<PlotFile> plots = PlotReport.WriteAll(Result(), dir.Path);
        PlotFile throughput = plots.First(p => p.Svg.StartsWith("throughput-page-fault1", StringComparison.Ordinal));
        Assert.Contains("physical floor (zeroing)", File.ReadAllText(Path.Combine(dir.Path, throughput.Svg)));
    }

    private static ScalingResult Result()
    {
        var r = new ScalingResult();
        r.Settings.Strategies = ["mmap-lock", "speculative"];
        r.Settings.Workloads = ["page-fault1"];
        r.Settings.ThreadCounts = [1, 2];
        void Add(string strategy, int threads, double ops) => r.Points.Add(new ScalingPoint
        {
            Workload = "page-fault1", Strategy = strategy, Mode = "measured", Threads = threads, OperationUnit = "pages touched",
            OpsPerSecond = ops, RepeatOpsPerSecond = [ops], PerThreadOpsPerSecond = [.. Enumerable.Repeat(ops / threads, threads)], MeasuredSeconds = 1,
        });
        Add("mmap-lock", 1, 500_000);
        Add("mmap-lock", 2, 800_000);
        Add("speculative", 1, 800_000);
        Add("speculative", 2, 1_500_000);
        r.Floors =
        [
            new FloorPoint { Workload = "page-fault1", Threads = 1, Kind = "zero", BytesPerThread = 128L << 20, OpsPerSecond = 1_000_000, OpsPerSecondStdDev = 10_000, RepeatOpsPerSecond = [990_000, 1_010_000] },
            new FloorPoint { Workload = "page-fault1", Threads = 2, Kind = "zero", BytesPerThread = 128L << 20, OpsPerSecond = 1_800_000, RepeatOpsPerSecond = [1_800_000] },
        ];
        return r;
    }
}
