using System.Reflection;
using BenchmarkDotNet.Attributes;
using SpecVm.Benchmarks.Cli;
using SpecVm.Benchmarks.Suites;

namespace SpecVm.Tests.Cli;

/// <summary>compare's intervals: a difference is claimed only when the interval of B/A excludes 1.</summary>
public class RatioIntervalTests
{
    [Fact]
    public void TheIntervalUsesStudentsTWithWelchDegreesOfFreedom()
    {
        // Equal log-variances and n = 2 + 2: df = 2, t(0.975, 2) = 4.3027; the interval is exp(shift ± t * se).
        double[] a = [100, Math.E * 100], b = [200, Math.E * 200];
        RatioInterval i = RatioInterval.Of(a, b)!;
        double se = Math.Sqrt((0.5 / 2) + (0.5 / 2));
        Assert.Equal(2, i.Estimate, 9);
        Assert.Equal(2 * Math.Exp(-4.302653 * se), i.Lower, 4);
        Assert.Equal(2 * Math.Exp(4.302653 * se), i.Upper, 3);
    }

    [Fact]
    public void ANoisyPointIsNoDifferenceEvenWhenItsRatioLooksLarge()
    {
        // The example: B/A about 1.19 with a 44% standard deviation is not evidence of anything.
        RatioInterval i = RatioInterval.Of([1000, 600, 1500], [1400, 700, 1800])!;
        Assert.InRange(i.Estimate, 1.1, 1.3);
        Assert.Equal(RatioVerdict.NoDifference, i.Verdict);
    }

    [Fact]
    public void AClearSlowdownIsSlowerAndAClearSpeedupIsFaster()
    {
        Assert.Equal(RatioVerdict.Slower, RatioInterval.Of([1000, 1010, 990], [800, 805, 795])!.Verdict);
        Assert.Equal(RatioVerdict.Faster, RatioInterval.Of([800, 805, 795], [1000, 1010, 990])!.Verdict);
    }

    [Fact]
    public void ASingleRepeatGivesNoInterval()
    {
        Assert.Null(RatioInterval.Of([1000], [500, 510]));
        Assert.Null(RatioInterval.Of([1000, 0], [500, 510]));
    }

    [Fact]
    public void EveryBenchmarkSuiteCarriesTheSharedConfigSoItAlsoRunsOutsideTheSwitcher()
    {
        Type[] suites = typeof(BenchConfig).Assembly.GetTypes()
            .Where(t => t.GetMethods().Any(m => m.GetCustomAttribute<BenchmarkAttribute>() != null))
            .ToArray();
        Assert.NotEmpty(suites);
        Assert.All(suites, t => Assert.Contains(t.GetCustomAttributes<ConfigAttribute>(), c => c.Config is BenchConfig));
    }
}
