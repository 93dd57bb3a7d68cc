using SpecVm.Faults;
using SpecVm.Scaling;
using SpecVm.Simulation;
using SpecVm.Workloads;

namespace SpecVm.Tests.Scaling;

/// <summary>The physical floor (issue #14): measured beside real-thread points, once per kind and thread count; never in virtual time.</summary>
public class PhysicalFloorTests
{
    private const long Small = 4L << 20;

    private static ScalingOptions Tiny(bool floor, params Workload[] workloads) => new()
    {
        Workloads = workloads,
        Strategies = [new MmapLockStrategy()],
        ThreadCounts = [1],
        Warmup = TimeSpan.FromMilliseconds(50),
        Duration = TimeSpan.FromMilliseconds(150),
        Repeats = 1,
        MeasureFloor = floor,
    };

    [Fact]
    public void ARealThreadRunMeasuresAZeroingFloorForAnonymousFaultsAndACopyingOneForPrivateFileFaults()
    {
        // page-fault4 reads (the zero page, or a cached page): it fills no page, so it has no floor.
        var experiment = new ScalingExperiment(Tiny(true, new PageFault1(Small), new PageFault2(Small), new PageFault4(Small)));
        Assert.Equal(3 + 2, experiment.TotalRuns); // Three points and two floors (zero, copy) at one thread count.
        ScalingResult r = experiment.Run();

        Assert.NotNull(r.Floors);
        Assert.Equal(2, r.Floors!.Count);
        FloorPoint zero = r.FindFloor("page-fault1", 1)!;
        Assert.Equal("zero", zero.Kind);
        Assert.Equal(Small, zero.BytesPerThread);
        Assert.True(zero.OpsPerSecond > 0, $"{zero.OpsPerSecond} pages/s");
        Assert.Equal(zero.OpsPerSecond, Assert.Single(zero.RepeatOpsPerSecond));
        FloorPoint copy = r.FindFloor("page-fault2", 1)!;
        Assert.Equal("copy", copy.Kind);
        Assert.Equal(2 * Small, copy.BytesPerThread);
        Assert.True(copy.OpsPerSecond > 0, $"{copy.OpsPerSecond} pages/s");
        Assert.Null(r.FindFloor("page-fault4", 1));

        // It survives the JSON round trip.
        ScalingResult back = ScalingResult.FromJson(r.ToJson());
        Assert.Equal(zero.OpsPerSecond, back.FindFloor("page-fault1", 1)!.OpsPerSecond);
    }

    [Fact]
    public void WorkloadsWithTheSameFloorShareOneMeasurement()
    {
        // Threads and processes of page_fault1 zero the same pages on the same memory: one floor run, two floor points.
        var experiment = new ScalingExperiment(Tiny(true, new PageFault1(Small), new PageFault1(Small, WorkloadMode.Processes)));
        Assert.Equal(2 + 1, experiment.TotalRuns);
        ScalingResult r = experiment.Run();
        Assert.Equal(2, r.Floors!.Count);
        Assert.Equal(r.Floors[0].OpsPerSecond, r.Floors[1].OpsPerSecond);
    }

    [Fact]
    public void TheLibraryMeasuresNoFloorUnlessAsked()
    {
        Assert.False(new ScalingOptions().MeasureFloor);
        ScalingResult r = new ScalingExperiment(Tiny(false, new PageFault1(Small))).Run();
        Assert.Null(r.Floors);
        Assert.DoesNotContain("floors", r.ToJson(), StringComparison.Ordinal);
    }

    [Fact]
    public void AVirtualTimeRunHasNoFloor()
    {
        var options = new ScalingOptions
        {
            Workloads = [new PageFault1(2L << 20)],
            Strategies = [new MmapLockStrategy()],
            ThreadCounts = [1, 2],
            Repeats = 1,
            MeasureFloor = true,
            VirtualTime = new VirtualTimeOptions { Band = false, Warmup = TimeSpan.FromMilliseconds(0.1), Duration = TimeSpan.FromMilliseconds(0.3) },
        };
        var experiment = new ScalingExperiment(options);
        Assert.Equal(2, experiment.TotalRuns);
        ScalingResult r = experiment.Run();
        Assert.Null(r.Floors);
        Assert.All(r.Points, p => Assert.Equal("predicted", p.Mode));
    }
}
