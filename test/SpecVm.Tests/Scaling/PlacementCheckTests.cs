using SpecVm.Scaling;
using SpecVm.Smp;
using SpecVm.Workloads;

namespace SpecVm.Tests.Scaling;

/// <summary>PlacementCheck on planted core sets and topologies, and the sysfs CPU-list parser it relies on.</summary>
public class PlacementCheckTests
{
    private static readonly int[] FourCores = [0, 1, 2, 3];

    /// <summary>No SMT: each core is its own sibling.</summary>
    private static IReadOnlyList<int>? Alone(int core) => [core];

    /// <summary>Two-way SMT numbered as Intel's firmware does: core c and c + 2 share a physical core (of four).</summary>
    private static IReadOnlyList<int>? PairedWithPlusTwo(int core) => [core % 2, (core % 2) + 2];

    [Fact]
    public void EveryCpuThreadOnItsOwnCoreGivesNoWarning()
    {
        Assert.Empty(PlacementCheck.Warnings([("page-fault1", 0)], [1, 2, 4], FourCores, Alone));
        Assert.Empty(PlacementCheck.Warnings([("database-load", 1)], [1, 3], FourCores, Alone));
    }

    [Fact]
    public void MoreCpuThreadsThanCoresNamesTheWorkloadsAndCountsTheBackgroundCpu()
    {
        IReadOnlyList<string> w = PlacementCheck.Warnings([("database-load", 1), ("native-database-load", 1), ("page-fault1", 0)], [1, 2], [0, 1], Alone);
        string line = Assert.Single(w);
        Assert.StartsWith("database-load, native-database-load: 3 CPU threads (2 measured + 1 background) but this process may use 2 cores (cores 0-1)", line);
    }

    [Fact]
    public void OversubscribedMeasuredThreadsAreWarnedAboutToo()
    {
        string line = Assert.Single(PlacementCheck.Warnings([("mmap1", 0)], [1, 8], [0, 1, 2, 5], Alone));
        Assert.StartsWith("mmap1: 8 CPU threads (8 measured) but this process may use 4 cores (cores 0-2,5)", line);
    }

    [Fact]
    public void SmtSiblingsAreWarnedAboutFromTheFirstThreadCountThatUsesThem()
    {
        // CPU i runs on core i: cores 0 and 1 are distinct physical cores, core 2 is core 0's sibling.
        Assert.Empty(PlacementCheck.Warnings([("page-fault1", 0)], [1, 2], FourCores, PairedWithPlusTwo));
        string line = Assert.Single(PlacementCheck.Warnings([("page-fault1", 0)], [1, 2, 4], FourCores, PairedWithPlusTwo));
        Assert.StartsWith("from 3 CPU threads on, two of them run on SMT siblings of one physical core (cores 0 and 2)", line);

        // A background CPU counts: 2 loaders + the writer reach core 2.
        Assert.Single(PlacementCheck.Warnings([("database-load", 1)], [2], FourCores, PairedWithPlusTwo));
    }

    [Fact]
    public void AnUnknownTopologyChecksOnlyTheCoreCount() =>
        Assert.Empty(PlacementCheck.Warnings([("page-fault1", 0)], [1, 4], FourCores, _ => null));

    [Fact]
    public void ThePublicOverloadReadsThisMachine()
    {
        int cores = Affinity.AllowedCores.Count;
        Assert.Empty(PlacementCheck.Warnings([new PageFault1()], [1]));
        IReadOnlyList<string> over = PlacementCheck.Warnings([new DatabaseLoad()], [cores]);
        Assert.Contains(over, l => l.StartsWith($"database-load: {cores + 1} CPU threads", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("0\n", new[] { 0 })]
    [InlineData("0,4", new[] { 0, 4 })]
    [InlineData("0-3,8-9\n", new[] { 0, 1, 2, 3, 8, 9 })]
    [InlineData("5,1", new[] { 1, 5 })]
    public void TheSysfsCpuListParses(string text, int[] cores) => Assert.Equal(cores, Affinity.ParseCpuList(text));

    [Theory]
    [InlineData("")]
    [InlineData("a")]
    [InlineData("3-1")]
    [InlineData("-1")]
    [InlineData("0-99999")]
    public void ABadCpuListIsNull(string text) => Assert.Null(Affinity.ParseCpuList(text));

    [Fact]
    public void ThisMachinesSiblingListsContainTheirOwnCore()
    {
        foreach (int core in Affinity.AllowedCores)
        {
            IReadOnlyList<int>? siblings = Affinity.ThreadSiblings(core);
            if (siblings == null)
            {
                Assert.False(OperatingSystem.IsLinux() && File.Exists($"/sys/devices/system/cpu/cpu{core}/topology/thread_siblings_list"));
                continue;
            }

            Assert.Contains(core, siblings);
        }
    }
}
