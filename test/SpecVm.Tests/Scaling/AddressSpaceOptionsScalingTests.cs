using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Scaling;
using SpecVm.Workloads;

namespace SpecVm.Tests.Scaling;

/// <summary>ScalingOptions.AddressSpaceOptions reaches the built-in workloads and is recorded in the result.</summary>
[Collection(Mm.MachineCollection.Name)]
public class AddressSpaceOptionsScalingTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TargetedShootdownsInTheHarnessSpareTheLoadersTheWritersIpis(bool targeted)
    {
        ScalingResult r = new ScalingExperiment(new ScalingOptions
        {
            Workloads = [new DatabaseLoad(1L << 20, writerOpsPerSecond: 2000)],
            Strategies = [new SpeculativeStrategy()],
            ThreadCounts = [2],
            Warmup = TimeSpan.FromMilliseconds(50),
            Duration = TimeSpan.FromMilliseconds(400),
            Repeats = 1,
            Oversubscribe = true,
            AddressSpaceOptions = new AddressSpaceOptions { TargetedShootdowns = targeted },
        }).Run();

        Assert.Equal(targeted, r.Settings.TargetedShootdowns);
        Assert.True(r.Settings.DowngradeOnUnmap);
        ScalingPoint p = Assert.Single(r.Points);
        long avoided = p.Counters["TargetedIpisAvoided"];
        if (targeted)
        {
            // The writer's munmaps touch pages no loader ever cached: awake loaders are not interrupted.
            Assert.True(avoided > 0, $"No IPI was avoided ({p.IpisPerSecond:F0} IPIs/s).");
        }
        else
        {
            Assert.Equal(0, avoided);
        }
    }
}
