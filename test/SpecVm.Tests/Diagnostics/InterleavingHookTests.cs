using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Tests.Diagnostics;

public class InterleavingHookTests
{
    [HookFact]
    public void HooksAreCompiledIntoTheBuildTheTestsUse() => Assert.True(InterleavingHooks.CompiledIn);

    // The hook enums are internal (a public test method cannot take them), so the data passes their values as ints.
    [HookTheory]
    [InlineData((int)HookPoint.SpecAfterLookup, (int)HookAction.ForceAbort, CpuCounter.SpecAbortSeqChanged, 64)]
    [InlineData((int)HookPoint.SpecAfterSeqRead, (int)HookAction.ForceAbort, CpuCounter.SpecAbortSeqChanged, 64)]
    [InlineData((int)HookPoint.SpecBeforePtlTryLock, (int)HookAction.FailTryLock, CpuCounter.SpecAbortPtlBusy, 63)]
    [InlineData((int)HookPoint.SpecBeforeRecheck, (int)HookAction.ForceAbort, CpuCounter.SpecAbortSeqChanged, 63)]
    public void ForcedSpeculativeAbortsAreCountedAndFallBack(int pointValue, int actionValue, CpuCounter counter, int expected)
    {
        var point = (HookPoint)pointValue;
        var action = (HookAction)actionValue;
        using var machine = new Machine(new MachineOptions { CpuCount = 1, MemoryBytes = 32L << 20 });
        using var mm = new AddressSpace(machine, new SpeculativeStrategy());
        machine.Hooks.Handler = (p, _) => p == point ? action : HookAction.Continue;
        machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, 4 << 20, Protection.ReadWrite);
            mm.Write(cpu, a, 1UL); // first fault of the PMD: points after the walk see no page table (counted apart)
            for (ulong off = 4096; off < 64 * 4096; off += 4096)
            {
                mm.Write(cpu, a + off, off);
            }

            for (ulong off = 4096; off < 64 * 4096; off += 4096)
            {
                Assert.Equal(off, mm.Read<ulong>(cpu, a + off));
            }

            mm.Unmap(cpu, a, 4 << 20);
        });
        Assert.Equal(expected, machine.Counter(counter));
        Assert.Equal(0, machine.Counter(CpuCounter.SpecSuccess));
        Assert.Equal(64, machine.Counter(CpuCounter.SpecFallbacks));
    }

    [HookFact]
    public void WriterHooksFireInProtocolOrder()
    {
        using var machine = new Machine(new MachineOptions { CpuCount = 1, MemoryBytes = 32L << 20 });
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        var seen = new List<HookPoint>();
        machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, 1 << 20, Protection.ReadWrite);
            mm.Write(cpu, a, 1UL);
            machine.Hooks.Handler = (p, _) =>
            {
                seen.Add(p);
                return HookAction.Continue;
            };
            mm.Unmap(cpu, a, 1 << 20);
            machine.Hooks.Handler = null;
        });
        Assert.Equal(
            [HookPoint.WriterBeforeIndexPublish, HookPoint.WriterAfterIndexPublish, HookPoint.WriterBetweenZapAndShootdown, HookPoint.WriterAfterShootdown],
            seen);
    }
}
