using SpecVm.Faults;
using SpecVm.Scaling;
using SpecVm.Smp;
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
        Assert.True(p.OutcomeTotal(FaultOutcomeKind.Attempt) > 0);
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
        Assert.Empty(p.Outcomes!); // mmap-lock declares no outcomes.

        // Rates, fairness and wait histograms (#16): one task, so min = max = the total, linear = the point itself.
        Assert.Equal(p.PerThreadOpsPerSecond[0], p.PerThreadMin);
        Assert.Equal(p.PerThreadOpsPerSecond[0], p.PerThreadMax);
        Assert.Equal(p.OpsPerSecond, p.OpsPerCpuSecond);
        Assert.Equal(p.OpsPerSecond, p.Linear);
        Assert.NotNull(p.WaitHistograms);
        Assert.Equal(WaitHistogram.Kinds.Select(WaitHistogram.Name).Order(), p.WaitHistograms.Keys.Order());
        Assert.All(p.WaitHistograms.Values, h => Assert.Equal(WaitHistogram.BucketCount, h.Count));
        Assert.NotNull(p.WaitSeconds);
        Assert.Equal(p.WaitHistograms.Keys.Order(), p.WaitSeconds.Keys.Order());

        // The histograms count the loader's CPU only: the writer's munmaps wait for the running loader's acks on the
        // writer's own CPU, which Counters (every CPU) include and the histograms do not.
        string ack = WaitHistogram.Name(WaitKind.ShootdownAck);
        long allCpus = Enumerable.Range(0, WaitHistogram.BucketCount).Sum(b => p.Counters[WaitHistogram.Counter(WaitKind.ShootdownAck, b).ToString()]);
        Assert.True(allCpus > p.WaitHistograms[ack].Sum(), $"The writer's ack waits were counted as the loader's ({allCpus} in all, {p.WaitHistograms[ack].Sum()} the loader's).");
    }

    [Fact]
    public void LinearIsTheOneThreadPointOfTheSameWorkloadStrategyAndModeTimesThreads()
    {
        ScalingPoint P(string mode, int threads, double ops) => new() { Workload = "w", Strategy = "s", Mode = mode, Threads = threads, OpsPerSecond = ops };
        List<ScalingPoint> points = [P("measured", 1, 100), P("measured", 4, 300), P("predicted", 4, 350), P("predicted", 2, 190)];
        ScalingExperiment.FillLinear(points);
        Assert.Equal(100, points[0].Linear);
        Assert.Equal(400, points[1].Linear);
        Assert.Null(points[2].Linear); // No predicted 1-thread point: a measured one must not stand in for it.
        Assert.Null(points[3].Linear);
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
