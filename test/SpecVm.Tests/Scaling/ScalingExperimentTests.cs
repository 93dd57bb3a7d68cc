using SpecVm.Faults;
using SpecVm.Scaling;
using SpecVm.Workloads;
using SpecVm.Mm;

namespace SpecVm.Tests.Scaling;

public class ScalingExperimentTests
{
    private const long Small = 4L << 20;

    public static TheoryData<string> ModelWorkloads => new()
    {
        "page-fault1", "page-fault2", "page-fault3", "page-fault1-processes", "database-load", "database-load-interleaved", "database-load-nowriter", "ebizzy",
    };

    public static TheoryData<string> NativeWorkloads => new()
    {
        "native-page-fault1", "native-page-fault2", "native-page-fault3", "native-database-load",
    };

    private static ScalingResult RunTiny(Workload w, params FaultStrategy[] strategies) =>
        new ScalingExperiment(new ScalingOptions
        {
            Workloads = [w],
            Strategies = strategies,
            ThreadCounts = [1],
            Warmup = TimeSpan.FromMilliseconds(50),
            Duration = TimeSpan.FromMilliseconds(150),
            Repeats = 1,
        }).Run();

    [Theory]
    [MemberData(nameof(ModelWorkloads))]
    public void EachModelWorkloadHasPositiveThroughputWithOneThread(string name)
    {
        Workload w = WorkloadCatalog.TryCreate(name, mappingBytes: Small, sliceBytes: Small)!;
        ScalingResult r = RunTiny(w, new SpeculativeStrategy());
        ScalingPoint p = Assert.Single(r.Points);
        Assert.Equal(name, p.Workload);
        Assert.Equal("speculative", p.Strategy);
        Assert.True(p.OpsPerSecond > 0, $"{name}: {p.OpsPerSecond} ops/s");
        Assert.Single(p.PerThreadOpsPerSecond);
        Assert.True(p.SpeculativeAttempts > 0);
        Assert.NotNull(p.TlbHitRate);
    }

    [Fact]
    public void DatabaseLoadReportsWriterOpsAndWriteHeldShare()
    {
        var w = new DatabaseLoad(Small, writerOpsPerSecond: 500);
        ScalingResult r = RunTiny(w, new MmapLockStrategy());
        ScalingPoint p = Assert.Single(r.Points);
        Assert.True(p.BackgroundOpsPerSecond > 0);
        Assert.InRange(p.Metrics["mmapWriteHeldShare"], 0.0, 1.0);
        Assert.Equal(0, p.SpeculativeAttempts);
    }

    [Theory]
    [MemberData(nameof(NativeWorkloads))]
    public void NativeWorkloadsRunOnLinux(string name)
    {
        if (!OperatingSystem.IsLinux())
        {
            return; // Native workloads use Linux's mmap/madvise/memfd_create.
        }

        Workload w = WorkloadCatalog.TryCreate(name, mappingBytes: Small, sliceBytes: Small)!;
        ScalingResult r = RunTiny(w, new MmapLockStrategy());
        ScalingPoint p = Assert.Single(r.Points);
        Assert.Equal(ScalingExperiment.NativeStrategy, p.Strategy);
        Assert.True(p.Native);
        Assert.True(p.OpsPerSecond > 0);
    }

    [Fact]
    public void StrategiesAndThreadCountsMultiplyIntoPoints()
    {
        var e = new ScalingExperiment(new ScalingOptions
        {
            Workloads = [new PageFault1(Small), new NativePageFault(1, Small)],
            Strategies = [new MmapLockStrategy(), new PerVmaLockStrategy()],
            ThreadCounts = [1],
            Duration = TimeSpan.FromMilliseconds(100),
            Warmup = TimeSpan.Zero,
            Repeats = 2,
        });
        Assert.Equal(6, e.TotalRuns);
    }

    [Fact]
    public void BadOptionsAreRejectedWithClearMessages()
    {
        Workload w = new PageFault1(Small);
        FaultStrategy[] s = [new MmapLockStrategy()];
        var zero = Assert.Throws<ArgumentException>(() => new ScalingExperiment(new ScalingOptions { Workloads = [w], Strategies = s, ThreadCounts = [0] }));
        Assert.Contains("1 or more", zero.Message);
        int tooMany = SpecVm.Smp.Affinity.AllowedCores.Count + 1;
        var over = Assert.Throws<ArgumentException>(() => new ScalingExperiment(new ScalingOptions { Workloads = [w], Strategies = s, ThreadCounts = [tooMany] }));
        Assert.Contains("oversubscription", over.Message);
        _ = new ScalingExperiment(new ScalingOptions { Workloads = [w], Strategies = s, ThreadCounts = [tooMany], Oversubscribe = true });
    }

    [Fact]
    public void CatalogsKnowEveryNameAndRejectUnknownOnes()
    {
        foreach (string n in WorkloadCatalog.Names)
        {
            Assert.Equal(n, WorkloadCatalog.TryCreate(n, Small, Small)!.Name);
        }

        foreach (string n in StrategyCatalog.Names)
        {
            Assert.Equal(n, StrategyCatalog.TryCreate(n)!.Name);
        }

        Assert.Null(WorkloadCatalog.TryCreate("nope"));
        Assert.Null(StrategyCatalog.TryCreate("nope"));
    }
}
