using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;
using SpecVm.Tests.Diagnostics;

namespace SpecVm.Tests.Mm;

/// <summary>
/// munmap downgrades the mmap lock after detaching the VMAs (Linux 4.20+): while it zaps and shoots down, classic
/// faults in other VMAs proceed; writers still wait. Without the downgrade (the 4.14 kernels), faults wait too.
/// </summary>
[Collection(MachineCollection.Name)]
public class UnmapDowngradeTests
{
    private const ulong Page = 4096;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    [HookTheory]
    [InlineData(true)]
    [InlineData(false)]
    public void FaultsInOtherVmasProceedWhileADowngradedUnmapZaps(bool downgrade)
    {
        using Machine machine = TestMachines.Create(2, 32);
        using var mm = new AddressSpace(machine, new MmapLockStrategy(), new AddressSpaceOptions { DowngradeOnUnmap = downgrade });
        ulong victim = machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, 64 * Page, Protection.ReadWrite, fixedAddress: 0x4000_0000);
            for (ulong p = 0; p < 64; p++)
            {
                mm.Write(cpu, a + (p * Page), p);
            }

            return a;
        });
        ulong other = machine.Run(1, cpu => mm.Map(cpu, 4 * Page, Protection.ReadWrite, fixedAddress: 0x8000_0000));

        using var parked = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        machine.Hooks.Handler = (point, cpu) =>
        {
            if (cpu.Id == 0 && point == HookPoint.WriterBetweenZapAndShootdown && !parked.IsSet)
            {
                parked.Set();
                release.Wait(Bound);
            }

            return HookAction.Continue;
        };
        Task unmap = machine.RunAsync(0, cpu => mm.Unmap(cpu, victim, 64 * Page));
        try
        {
            Assert.True(parked.Wait(Bound), "The unmap never reached its zap.");
            Task fault = machine.RunAsync(1, cpu => mm.Write(cpu, other, 7UL)); // A classic fault: mmap lock for read.
            bool faultedWhileZapping = fault.Wait(TimeSpan.FromMilliseconds(500));
            Assert.Equal(downgrade, faultedWhileZapping);
            Task map = machine.RunAsync(1, cpu => mm.Map(cpu, Page, Protection.Read)); // Queued behind the fault on CPU 1.
            Assert.False(map.Wait(TimeSpan.FromMilliseconds(200)), "A writer got the mmap lock during the unmap.");
            release.Set();
            Assert.True(unmap.Wait(Bound) && fault.Wait(Bound) && map.Wait(Bound), "The unmap, fault or map did not finish.");
        }
        finally
        {
            release.Set();
            machine.Hooks.Handler = null;
        }

        Assert.False(mm.MmapLock.IsWriteLocked);
        Assert.Equal(0, mm.MmapLock.ReaderCount);
        machine.Run(1, cpu => Assert.Equal(7UL, mm.Read<ulong>(cpu, other)));
        TestMachines.AssertNoViolations(mm);
    }
}
