using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;
using SpecVm.Tests.Diagnostics;
using SpecVm.Tests.Mm;
using Xunit.Abstractions;

namespace SpecVm.Tests.Faults;

/// <summary>
/// The per-mm sequence of Lespinasse's series (speculative-mmseq): what makes it differ from Dufour's per-VMA count is
/// that an mmap write <em>anywhere</em> in the address space aborts a speculative fault in flight, with the reason the
/// strategy declares. CPU 1 is parked inside its fault (sequence sampled, VMA copied, no lock held) while CPU 0 maps an
/// unrelated region far away; CPU 1 then notices the sequence moved, aborts and falls back, and its write still lands.
/// </summary>
[Collection(MachineCollection.Name)]
public sealed class SpeculativeMmSeqTests(ITestOutputHelper output)
{
    private const ulong Page = 4096;

    /// <summary>A 2 MiB-aligned base: both pages below share one PTE table.</summary>
    private const ulong Base = 0x6000_0000;

    /// <summary>Far from <see cref="Base"/>: nothing there shares a VMA, a PTE table or a PMD with it.</summary>
    private const ulong Unrelated = 0x7000_0000;

    [Fact]
    public void AnMmapOfAnUnrelatedRegionAbortsASpeculativeFaultInFlightWithTheDeclaredReason()
    {
        var strategy = new SpeculativeMmSeqStrategy();
        using Machine machine = TestMachines.Create(2, 16);
        using var mm = new AddressSpace(machine, strategy);
        machine.Run(0, cpu => mm.Map(cpu, 2 * Page, Protection.ReadWrite, fixedAddress: Base));
        machine.Run(1, cpu => mm.Write(cpu, Base, 1UL)); // The PTE table exists: the walk will not abort.
        CounterSnapshot before = machine.Snapshot();
        Task<AccessResult> fault;
        using (var gate = ParkedFault.Arm(machine, 1))
        {
            long attempts = machine.Cpu(1).Read(Outcome(strategy, "attempt").Registered!);
            fault = RunAsync(machine, 1, cpu => mm.TryWrite(cpu, Base + Page, 0xF00DUL));
            gate.WaitUntilParked(Outcome(strategy, "attempt").Registered!, attempts, fault);

            // The unrelated mmap: a whole write section (lock, insert a VMA, unlock), no frame taken from the pool.
            Task mapped = machine.RunAsync(0, cpu => mm.Map(cpu, Page, Protection.ReadWrite, fixedAddress: Unrelated));
            Assert.True(mapped.Wait(TimeSpan.FromSeconds(5)), "CPU 0's mmap did not finish while CPU 1 was parked.");
            mapped.GetAwaiter().GetResult();
        }

        Assert.Equal(AccessResult.Ok, fault.GetAwaiter().GetResult());
        CounterSnapshot c = machine.Snapshot().Minus(before);
        output.WriteLine(string.Join(", ", strategy.Outcomes.Select(o => $"{o.Name} {o.Read(c)}")));

        // Parked after the VMA copy was checked: the first check after it, before the PTL, sees the sequence moved.
        Assert.Equal(1, Outcome(strategy, "abort: seq1").Read(c));
        Assert.Equal(1, Outcome(strategy, "fallback").Read(c));
        Assert.Equal(0, Outcome(strategy, "success").Read(c));
        Assert.Equal(1, strategy.Outcomes.Where(o => o.Kind == FaultOutcomeKind.Abort).Sum(o => o.Read(c)));
        machine.Run(1, cpu => Assert.Equal(0xF00DUL, mm.Read<ulong>(cpu, Base + Page)));
        TestMachines.AssertNoViolations(mm);
    }

    [Fact]
    public void WithoutAnyMmapWriteTheSameFaultSucceedsSpeculatively()
    {
        var strategy = new SpeculativeMmSeqStrategy();
        using Machine machine = TestMachines.Create(2, 16);
        using var mm = new AddressSpace(machine, strategy);
        machine.Run(0, cpu => mm.Map(cpu, 2 * Page, Protection.ReadWrite, fixedAddress: Base));
        machine.Run(1, cpu => mm.Write(cpu, Base, 1UL));
        CounterSnapshot before = machine.Snapshot();
        machine.Run(1, cpu => mm.Write(cpu, Base + Page, 2UL));
        CounterSnapshot c = machine.Snapshot().Minus(before);
        Assert.Equal(1, Outcome(strategy, "success").Read(c));
        Assert.Equal(0, Outcome(strategy, "fallback").Read(c));
    }

    /// <summary>
    /// CPU 0 unmaps the very page CPU 1's parked fault is for. The correct strategy sees the sequence moved and falls
    /// back (the classic path says SIGSEGV); with the checks before and under the PTL planted away, the fault installs a
    /// PTE outside every VMA, which the write's result and the invariant checker both catch — the checks can fail.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AFaultRacingUnmapOfItsOwnPageFallsBackAndTheClassicPathSaysSegfault(bool plantSkipSeqRecheck)
    {
        var strategy = new SpeculativeMmSeqStrategy { PlantSkipSeqRecheck = plantSkipSeqRecheck };
        using Machine machine = TestMachines.Create(2, 16);
        using var mm = new AddressSpace(machine, strategy);
        machine.Run(0, cpu => mm.Map(cpu, 2 * Page, Protection.ReadWrite, fixedAddress: Base));
        machine.Run(1, cpu => mm.Write(cpu, Base, 1UL));
        Task<AccessResult> fault;
        using (var gate = ParkedFault.Arm(machine, 1))
        {
            long attempts = machine.Cpu(1).Read(Outcome(strategy, "attempt").Registered!);
            fault = RunAsync(machine, 1, cpu => mm.TryWrite(cpu, Base + Page, 0xBADUL));
            gate.WaitUntilParked(Outcome(strategy, "attempt").Registered!, attempts, fault);
            Task changed = machine.RunAsync(0, cpu => mm.Unmap(cpu, Base + Page, Page));
            Assert.True(changed.Wait(TimeSpan.FromSeconds(5)), "CPU 0's munmap did not finish while CPU 1 was parked.");
            changed.GetAwaiter().GetResult();
        }

        AccessResult result = fault.GetAwaiter().GetResult();
        IReadOnlyList<string> violations = InvariantChecker.FindViolations(mm);
        output.WriteLine($"plant {plantSkipSeqRecheck}: {result}; {string.Join("; ", violations)}");
        if (plantSkipSeqRecheck)
        {
            Assert.Equal(AccessResult.Ok, result);
            Assert.Contains(violations, v => v.Contains("outside every VMA", StringComparison.Ordinal));
        }
        else
        {
            Assert.Equal(AccessResult.SegmentationFault, result);
            Assert.Equal(0, Outcome(strategy, "success").Read(machine));
            Assert.Equal(1, Outcome(strategy, "abort: seq1").Read(machine));
            Assert.Empty(violations);
        }
    }

    /// <summary>
    /// The recheck under the PTL, the one that makes the fault safe: CPU 0 maps an unrelated region while CPU 1 holds
    /// the PTL (interrupts off) between its trylock and the recheck; the fault aborts with "abort: seq2".
    /// </summary>
    [HookFact]
    public void AnMmapBetweenThePtlAndTheRecheckAbortsWithSeq2()
    {
        var strategy = new SpeculativeMmSeqStrategy();
        using Machine machine = TestMachines.Create(2, 16);
        using var mm = new AddressSpace(machine, strategy);
        machine.Run(0, cpu => mm.Map(cpu, 2 * Page, Protection.ReadWrite, fixedAddress: Base));
        machine.Run(1, cpu => mm.Write(cpu, Base, 1UL));
        int fired = 0;
        machine.Hooks.Handler = (point, cpu) =>
        {
            if (point == HookPoint.SpecBeforeRecheck && cpu.Id == 1 && Interlocked.Exchange(ref fired, 1) == 0)
            {
                // CPU 0 needs nothing from CPU 1 to map (no shootdown), so CPU 1 may wait for it with interrupts off.
                Assert.True(machine.RunAsync(0, c => mm.Map(c, Page, Protection.ReadWrite, fixedAddress: Unrelated)).Wait(TimeSpan.FromSeconds(5)));
            }

            return HookAction.Continue;
        };
        CounterSnapshot before = machine.Snapshot();
        machine.Run(1, cpu => mm.Write(cpu, Base + Page, 3UL));
        machine.Hooks.Handler = null;
        CounterSnapshot c = machine.Snapshot().Minus(before);
        Assert.Equal(1, fired);
        Assert.Equal(1, Outcome(strategy, "abort: seq2").Read(c));
        Assert.Equal(1, Outcome(strategy, "fallback").Read(c));
        machine.Run(1, cpu => Assert.Equal(3UL, mm.Read<ulong>(cpu, Base + Page)));
        TestMachines.AssertNoViolations(mm);
    }

    private static FaultOutcome Outcome(FaultStrategy strategy, string name) => strategy.Outcomes.Single(o => o.Name == name);

    private static Task<T> RunAsync<T>(Machine machine, int cpu, Func<Cpu, T> work)
    {
        T result = default!;
        return machine.RunAsync(cpu, c => result = work(c)).ContinueWith(t =>
        {
            t.GetAwaiter().GetResult();
            return result;
        }, TaskScheduler.Default);
    }
}
