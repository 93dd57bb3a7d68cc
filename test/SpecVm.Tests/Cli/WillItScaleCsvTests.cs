using SpecVm.Benchmarks.Reports;
using SpecVm.Scaling;

namespace SpecVm.Tests.Cli;

/// <summary>The runtest.py-shaped CSV: header, zero row, threads and processes columns, linear from one task.</summary>
public class WillItScaleCsvTests
{
    private static ScalingPoint Point(string workload, string strategy, int threads, double ops) =>
        new() { Workload = workload, Strategy = strategy, Threads = threads, OpsPerSecond = ops };

    [Fact]
    public void AThreadsCurveIsWrittenAsRuntestPrintsIt()
    {
        var r = new ScalingResult { Points = [Point("mmap1", "mmap-lock", 1, 1000.4), Point("mmap1", "mmap-lock", 2, 1500.6)] };
        (string file, string csv) = Assert.Single(WillItScaleCsv.Build(r));
        Assert.Equal("wis-mmap1-mmap-lock.csv", file);
        Assert.Equal(
            "tasks,processes,processes_idle,threads,threads_idle,linear\n0,0,100,0,100,0\n1,0,0.00,1000,0.00,1000\n2,0,0.00,1501,0.00,2001\n",
            csv);
    }

    [Fact]
    public void AProcessesTwinSharesTheThreadsFileAndLinearTakesTheBetterSingleTask()
    {
        var r = new ScalingResult
        {
            Points =
            [
                Point("page-fault1", "speculative", 1, 100), Point("page-fault1", "speculative", 2, 150),
                Point("page-fault1-processes", "speculative", 1, 120), Point("page-fault1-processes", "speculative", 2, 230),
                Point("page-fault1", "mmap-lock", 1, 90),
            ],
        };
        var files = WillItScaleCsv.Build(r).ToDictionary(f => f.File, f => f.Csv);
        Assert.Equal(["wis-page-fault1-mmap-lock.csv", "wis-page-fault1-speculative.csv"], files.Keys.Order());
        string[] rows = files["wis-page-fault1-speculative.csv"].Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["1,120,0.00,100,0.00,120", "2,230,0.00,150,0.00,240"], rows[2..]);
    }

    [Fact]
    public void WithoutAOneTaskPointLinearIsEmpty()
    {
        var r = new ScalingResult { Points = [Point("tlb-flush1", "per-vma-lock", 2, 10)] };
        string csv = Assert.Single(WillItScaleCsv.Build(r)).Csv;
        Assert.EndsWith("\n2,0,0.00,10,0.00,\n", csv);
    }

    [Fact]
    public void ANameThatIsNoFileNamePartIsMadeOne() =>
        Assert.Equal("wis-my_load-my_strategy_2.csv", WillItScaleCsv.FileName("my/load", "my strategy:2"));
}
