using SpecVm.Smp;
using SpecVm.Faults;
using SpecVm.Mm;
using Xunit.Abstractions;
using SpecVm.Testing;

namespace SpecVm.Tests.Reliability;

/// <summary>
/// The randomized stress mode, bounded for CI: a short run with a fixed seed keeps every invariant, and each planted
/// bug is caught within a bounded time (a checker that never fails would prove nothing).
/// </summary>
public class StressRunTests(ITestOutputHelper output)
{
    [Fact]
    public void AShortStressRunWithAFixedSeedFindsNoViolation()
    {
        StressReport report = StressRun.Run(new StressOptions
        {
            Duration = TimeSpan.FromSeconds(2),
            Seed = 20261125,
            RoundDuration = TimeSpan.FromMilliseconds(100),
            Progress = p => output.WriteLine($"round {p.Round} seed {p.RoundSeed}: {p.Strategy} + {p.Workload}, {p.Operations} ops, {p.HookInjections} injections, {p.Violations.Count} violations"),
        });
        output.WriteLine($"seed {report.Seed}: {report.Rounds} rounds, {report.Operations} operations, {report.HookInjections} hook injections in {report.Elapsed}");
        Assert.True(report.Passed, $"round seed {report.FailingRoundSeed}: {string.Join("; ", report.Violations.Take(5))}");
        Assert.True(report.Rounds >= 3, $"only {report.Rounds} rounds");
        Assert.True(report.Operations > 0);
        Assert.Equal(report.Rounds, report.RoundSeeds.Count);
    }

    public static TheoryData<string> Plants => ["skip-seq-recheck", "skip-grace-period", "free-tables-before-shootdown"];

    [Theory]
    [MemberData(nameof(Plants))]
    public void StressCatchesAPlantedBugWithinBoundedTime(string plant)
    {
        var options = new StressOptions
        {
            Duration = TimeSpan.FromSeconds(6), // Caught in 0.1-2 s alone; the margin is for a loaded host (2.8 s once missed).
            Seed = 7,
            RoundDuration = TimeSpan.FromMilliseconds(100),
        };
        switch (plant)
        {
            case "skip-seq-recheck":
                options.Strategies = ["speculative"];
                options.AlwaysHammer = true;
                options.StrategyFactory = _ => new SpeculativeStrategy { PlantSkipSeqRecheck = true };
                break;
            case "skip-grace-period":
                options.Strategies = ["speculative", "per-vma-lock"];
                options.ConfigureAddressSpace = mm => mm.Slab.PlantSkipGracePeriod = true;
                break;
            default:
                options.Workloads = false;
                options.ConfigureAddressSpace = mm => mm.PlantFreeTablesBeforeShootdown = true;
                break;
        }

        StressReport report = StressRun.Run(options);
        output.WriteLine($"{plant}: {report.Rounds} rounds, {report.Operations} ops in {report.Elapsed}; failing round seed {report.FailingRoundSeed}");
        foreach (string v in report.Violations.Take(5))
        {
            output.WriteLine("  " + v);
        }

        Assert.False(report.Passed, $"planted bug {plant} survived {report.Rounds} rounds (seed {report.Seed})");
    }
}
