using System.Diagnostics;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;
using SpecVm.Tests.Mm;

namespace SpecVm.Tests.Misuse;

/// <summary>
/// The misuse cases that once killed the process (an access violation on freed native memory) run in a child
/// process — this test assembly started again with <c>child NAME</c> — so that a regression fails one test instead of
/// ending the whole run. The child exits 0 when the misuse was refused cleanly.
/// </summary>
[Collection(MachineCollection.Name)]
public class ChildProcessTests
{
    private const ulong Page = 4096;

    /// <summary>Scenario names and what each does in the child.</summary>
    public static readonly Dictionary<string, Action> Scenarios = new()
    {
        // Item 9: disposing an address space (and a file) after their machine crashed with AccessViolationException.
        ["dispose-after-machine"] = () =>
        {
            var machine = TestMachines.Create(2, 16);
            var mm = new AddressSpace(machine, new SpeculativeStrategy());
            var file = new SimFile(machine, 4 * (long)Page);
            machine.Run(0, cpu =>
            {
                ulong a = mm.Map(cpu, 4 * Page, Protection.ReadWrite);
                mm.Write(cpu, a, 1UL);
                mm.Write(cpu, mm.Map(cpu, 4 * Page, Protection.ReadWrite, MappingKind.SharedFile, file), 2UL);
            });
            Cpu cpu0 = machine.Cpu(0);
            machine.Dispose();
            mm.Dispose();
            file.Dispose();
            Expect<ObjectDisposedException>(() => cpu0.Read(CpuCounter.Faults));
            Expect<ObjectDisposedException>(() => machine.Memory.Frame(1));
            Expect<ObjectDisposedException>(() => machine.Memory.FrameSpan(1));
        },

        // Item 5/9: an access with a CPU of a disposed machine (its thread is gone) read freed memory.
        ["access-after-machine"] = () =>
        {
            var machine = TestMachines.Create(1, 16);
            var mm = new AddressSpace(machine, new MmapLockStrategy());
            ulong a = machine.Run(0, cpu =>
            {
                ulong at = mm.Map(cpu, Page, Protection.ReadWrite);
                mm.Write(cpu, at, 1UL);
                return at;
            });
            Cpu cpu0 = machine.Cpu(0);
            machine.Dispose();
            Expect<InvalidOperationException>(() => mm.TryRead(cpu0, a, out ulong _));
            Expect<InvalidOperationException>(() => mm.Map(cpu0, Page, Protection.Read));
        },
    };

    public static TheoryData<string> Names => [.. Scenarios.Keys];

    [Theory]
    [MemberData(nameof(Names))]
    public void MisuseThatOnceCrashedTheProcessIsRefusedInAChildProcess(string scenario)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath!)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add(typeof(ChildProcessTests).Assembly.Location);
        start.ArgumentList.Add("child");
        start.ArgumentList.Add(scenario);
        using Process child = Process.Start(start)!;
        Task<string> stdout = child.StandardOutput.ReadToEndAsync();
        Task<string> stderr = child.StandardError.ReadToEndAsync();
        if (!child.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            child.Kill(entireProcessTree: true);
            Assert.Fail($"Child '{scenario}' hung.");
        }

        Assert.True(child.ExitCode == 0, $"Child '{scenario}' exited {child.ExitCode}:\n{stdout.Result}\n{stderr.Result}");
    }

    /// <summary>Runs one scenario (the child's entry point): 0 if it completed, 3 if it threw.</summary>
    internal static int RunChild(string scenario)
    {
        try
        {
            Scenarios[scenario]();
            Console.WriteLine($"{scenario}: refused cleanly");
            return 0;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"{scenario}: {e}");
            return 3;
        }
    }

    private static void Expect<T>(Action act)
        where T : Exception
    {
        try
        {
            act();
        }
        catch (T)
        {
            return;
        }

        throw new InvalidOperationException($"Expected {typeof(T).Name}.");
    }
}
