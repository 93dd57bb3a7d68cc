using SpecVm.Benchmarks.Reports;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Scaling;
using SpecVm.Smp;

namespace SpecVm.Tests.Cli;

/// <summary>
/// Reports learn a strategy's vocabulary from the result, never from their own code: a strategy that no report has
/// heard of, with outcomes no report names, still has its outcomes listed in the CSV, the Markdown and the plots.
/// </summary>
public class OutcomeReportTests
{
    [Fact]
    public void CsvAndMarkdownListTheOutcomesOfAStrategyTheReportCodeHasNeverHeardOf()
    {
        ScalingResult r = Result();

        string csv = CsvReport.Build(r);
        string[] lines = csv.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        string[] header = lines[0].Split(',');
        Assert.Contains("outcome_abort_gremlins_in_the_tlb", header);
        Assert.Contains("outcome_retry_after_tea", header);
        string[] row = lines[2].Split(',');
        Assert.Equal("tea-and-biscuits", row[Array.IndexOf(header, "strategy")]);
        Assert.Equal("7", row[Array.IndexOf(header, "outcome_abort_gremlins_in_the_tlb")]);
        Assert.Equal("0.9", row[Array.IndexOf(header, "success_rate")]);
        Assert.Equal(string.Empty, lines[1].Split(',')[Array.IndexOf(header, "outcome_abort_gremlins_in_the_tlb")]); // mmap-lock declares none

        string md = MarkdownReport.Build(r, []);
        Assert.Contains("| page-fault1 | tea-and-biscuits | 2 |", md);
        Assert.Contains("success 90, abort: gremlins in the TLB 7, retry after tea 3", md);
        Assert.Contains(0.9.ToString("P2", System.Globalization.CultureInfo.InvariantCulture), md);
    }

    [Fact]
    public void ThePlotsDrawTheOutcomesOfAnUnknownStrategy()
    {
        using var dir = new TempDir();
        IReadOnlyList<PlotFile> plots = PlotReport.WriteAll(Result(), dir.Path);
        Assert.Contains(plots, p => p.Title.Contains("each declared outcome", StringComparison.Ordinal));
    }

    [Fact]
    public void EveryCatalogStrategyDeclaresDistinctNamesAndNewOnesNeedNoCpuCounter()
    {
        foreach (string name in StrategyCatalog.Names)
        {
            FaultStrategy s = StrategyCatalog.Create(name);
            Assert.Equal(s.Outcomes.Count, s.Outcomes.Select(o => o.Name).Distinct().Count());
            Assert.Same(s.Outcomes, s.Outcomes); // Declared once, not built per call.
        }

        Assert.Contains("speculative-mmseq", StrategyCatalog.Names);
        Assert.Contains("speculative-mmseq", StrategyCatalog.CorrectNames);
        Assert.DoesNotContain("speculative-spin", StrategyCatalog.CorrectNames);
        Assert.Equal(StrategyCatalog.Baseline, StrategyCatalog.Names[0]);
        Assert.All(StrategyCatalog.Create("speculative-mmseq").Outcomes, o => Assert.NotNull(o.Registered));
        Assert.Throws<ArgumentException>(() => StrategyCatalog.Create("no-such-strategy"));
    }

    [Fact]
    public void ARegisteredCounterIsCountedPerCpuAndReadLikeABuiltInOne()
    {
        RegisteredCounter a = RegisteredCounter.Register("outcome-report-tests/a");
        Assert.Same(a, RegisteredCounter.Register("outcome-report-tests/a"));
        using var machine = new Machine(new MachineOptions { CpuCount = 2, MemoryBytes = 8L << 20 });
        CounterSnapshot before = machine.Snapshot();
        machine.Run(0, cpu => cpu.Count(a));
        machine.Run(1, cpu =>
        {
            cpu.Count(a);
            cpu.Count(a);
        });
        Assert.Equal(1, machine.Cpu(0).Read(a));
        Assert.Equal(3, machine.Counter(a));
        Assert.Equal(3, machine.Snapshot().Minus(before)[a]);
        Assert.DoesNotContain("outcome-report-tests/a", machine.Snapshot().ToDictionary().Keys);
    }

    private static ScalingResult Result()
    {
        var r = new ScalingResult();
        r.Settings.Strategies = ["mmap-lock", "tea-and-biscuits"];
        r.Settings.Workloads = ["page-fault1"];
        r.Settings.ThreadCounts = [2];
        foreach (string s in r.Settings.Strategies)
        {
            r.Points.Add(new ScalingPoint
            {
                Workload = "page-fault1", Strategy = s, Mode = "measured", Threads = 2, OperationUnit = "fault",
                OpsPerSecond = 1000, OpsPerSecondMedian = 1000, RepeatOpsPerSecond = [1000], PerThreadOpsPerSecond = [500, 500], MeasuredSeconds = 1,
                Outcomes = s == "mmap-lock" ? [] :
                [
                    new("attempt", FaultOutcomeKind.Attempt, 100),
                    new("success", FaultOutcomeKind.Success, 90),
                    new("abort: gremlins in the TLB", FaultOutcomeKind.Abort, 7),
                    new("retry after tea", FaultOutcomeKind.Retry, 3),
                    new("abort: never happens", FaultOutcomeKind.Abort, 0),
                ],
            });
        }

        return r;
    }

    private sealed class TempDir : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("specvm-outcomes-").FullName;

        public void Dispose() => Directory.Delete(Path, recursive: true);
    }
}
