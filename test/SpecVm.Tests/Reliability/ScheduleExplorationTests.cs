using SpecVm.Tests.Diagnostics;
using Xunit.Abstractions;

namespace SpecVm.Tests.Reliability;

/// <summary>
/// Systematic exploration of the speculative fault against Unmap, Protect and DontNeed at the interleaving hooks:
/// every schedule of the correct protocol keeps the invariants, and each planted bug is found within the bounded set.
/// </summary>
public class ScheduleExplorationTests(ITestOutputHelper output)
{
    [HookTheory]
    [InlineData(WriterOp.Unmap)]
    [InlineData(WriterOp.ProtectReadOnly)]
    [InlineData(WriterOp.DontNeed)]
    public void EveryScheduleOfTheCorrectProtocolKeepsTheInvariants(WriterOp op)
    {
        int explored = 0;
        foreach (Schedule s in ScheduleExplorer.All(op))
        {
            List<string> v = ScheduleExplorer.Run(s, Plant.None);
            explored++;
            Assert.True(v.Count == 0, $"{s}: {string.Join("; ", v)}");
        }

        output.WriteLine($"{op}: {explored} schedules explored, 0 violations");
    }

    [HookTheory]
    [InlineData(WriterOp.Unmap)]
    [InlineData(WriterOp.ProtectReadOnly)]
    [InlineData(WriterOp.DontNeed)]
    public void EveryScheduleKeepsTheInvariantsWithTargetedShootdowns(WriterOp op)
    {
        int explored = 0;
        foreach (Schedule s in ScheduleExplorer.All(op))
        {
            List<string> v = ScheduleExplorer.Run(s, Plant.None, targeted: true);
            explored++;
            Assert.True(v.Count == 0, $"{s} (targeted): {string.Join("; ", v)}");
        }

        output.WriteLine($"{op} (targeted shootdowns): {explored} schedules explored, 0 violations");
    }

    [HookTheory]
    [InlineData(Plant.NoSeqRecheck, WriterOp.Unmap)]
    [InlineData(Plant.NoSeqRecheck, WriterOp.ProtectReadOnly)]
    [InlineData(Plant.NoGracePeriod, WriterOp.Unmap)]
    [InlineData(Plant.FreeTablesBeforeShootdown, WriterOp.Unmap)]
    [InlineData(Plant.SpinOnPtl, WriterOp.Unmap)]
    [InlineData(Plant.SpinOnPtl, WriterOp.DontNeed)]
    public void EachPlantedBugIsFoundWithinTheBoundedSchedules(Plant plant, WriterOp op)
    {
        int explored = 0;
        foreach (Schedule s in ScheduleExplorer.All(op))
        {
            explored++;
            List<string> v = ScheduleExplorer.Run(s, plant);
            if (v.Count > 0)
            {
                output.WriteLine($"{plant} found after {explored} schedules at {s}: {v[0]}");
                return;
            }
        }

        Assert.Fail($"planted bug {plant} survived all {explored} schedules of {op}");
    }
}
