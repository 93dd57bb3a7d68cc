using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Tests.Mm;

/// <summary>
/// The tests that start machines run one at a time and alone: the build machine has two cores, and every such test
/// already runs two pinned CPU threads.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class MachineCollection
{
    public const string Name = "SpecVm machines";
}

internal static class TestMachines
{
    /// <summary>Every correct strategy of the catalog, its baseline first.</summary>
    public static IReadOnlyList<string> StrategyNames => StrategyCatalog.CorrectNames;

    public static Machine Create(int cpus, long memoryMiB, TimeSpan? watchdog = null) =>
        new(new MachineOptions
        {
            CpuCount = cpus,
            MemoryBytes = memoryMiB << 20,
            WatchdogTimeout = watchdog ?? TimeSpan.FromSeconds(5),
        });

    public static FaultStrategy Strategy(string name) => StrategyCatalog.Create(name);

    /// <summary>FNV-1a, stable across runs, to put read bytes in a trace.</summary>
    public static ulong Hash(ReadOnlySpan<byte> bytes)
    {
        ulong h = 14695981039346656037;
        foreach (byte b in bytes)
        {
            h = (h ^ b) * 1099511628211;
        }

        return h;
    }

    /// <summary>Frees what is left (files after their mappings) and says whether every frame came back.</summary>
    public static void AssertAllFramesFree(Machine machine, long freeBefore)
    {
        machine.Srcu.Barrier();
        Assert.Equal(freeBefore, machine.Memory.Census().Free);
        Assert.Equal(freeBefore, machine.Frames.FreeFrames);
    }

    public static void AssertNoViolations(AddressSpace mm, params SimFile[] files)
    {
        IReadOnlyList<string> violations = InvariantChecker.FindViolations(mm, files);
        Assert.True(violations.Count == 0, "Invariant violations:\n  " + string.Join("\n  ", violations));
    }
}
