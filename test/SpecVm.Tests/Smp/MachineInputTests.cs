using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;
using SpecVm.Tests.Memory;

namespace SpecVm.Tests.Smp;

public class MachineInputTests
{
    [Fact]
    public void MapAndUnmapRejectUnalignedStartsAndLengthsNamingTheArgument()
    {
        using Machine m = ShootdownTests.NewMachine();
        var ledger = FrameLedger.Begin(m);
        using (var mm = new AddressSpace(m, new MmapLockStrategy()))
        {
            m.Run(0, cpu =>
            {
                Assert.Equal("length", Assert.Throws<ArgumentException>(() => mm.Map(cpu, 4095, Protection.ReadWrite)).ParamName);
                Assert.Equal("length", Assert.Throws<ArgumentException>(() => mm.Map(cpu, 0, Protection.ReadWrite)).ParamName);
                Assert.Equal("fixedAddress", Assert.Throws<ArgumentException>(() => mm.Map(cpu, 4096, Protection.ReadWrite, fixedAddress: 0x4000_0010)).ParamName);
                ulong a = mm.Map(cpu, 2 * 4096, Protection.ReadWrite);
                Assert.Equal("start", Assert.Throws<ArgumentException>(() => mm.Unmap(cpu, a + 1, 4096)).ParamName);
                Assert.Equal("length", Assert.Throws<ArgumentException>(() => mm.Unmap(cpu, a, 4097)).ParamName);
                Assert.Equal("start", Assert.Throws<ArgumentOutOfRangeException>(() => mm.Unmap(cpu, 1UL << 47, 4096)).ParamName);
                Assert.Equal("start", Assert.Throws<ArgumentOutOfRangeException>(() => mm.Unmap(cpu, (1UL << 47) - 4096, 8192)).ParamName);

                // Nothing was changed by the rejected calls.
                mm.Write(cpu, a, 42UL);
                Assert.Equal(42UL, mm.Read<ulong>(cpu, a));
                mm.Unmap(cpu, a, 2 * 4096);
            });
        }

        ledger.AssertBalanced();
    }

    [Fact]
    public void AccessToANonCanonicalAddressIsASegmentationFaultEvenWhenItAliasesACachedTranslation()
    {
        using Machine m = ShootdownTests.NewMachine();
        var ledger = FrameLedger.Begin(m);
        using (var mm = new AddressSpace(m, new MmapLockStrategy()))
        {
            m.Run(0, cpu =>
            {
                ulong a = mm.Map(cpu, 4096, Protection.ReadWrite);
                mm.Write(cpu, a, 7UL);
                Assert.True(cpu.Tlb.Contains(a >> 12));

                // The TLB tag packs the context id above the 36-bit page number: an address with those id bits set
                // above bit 47 must not hit the cached translation of the canonical one.
                ulong[] bad = [1UL << 47, a | (1UL << 47), a | ((ulong)(uint)mm.TlbContext.Id << 48), a | (1UL << 63), ulong.MaxValue & ~7UL];
                foreach (ulong va in bad)
                {
                    Assert.True(AccessResult.SegmentationFault == mm.TryRead(cpu, va, out ulong _), $"read 0x{va:x}");
                    Assert.True(AccessResult.SegmentationFault == mm.TryWrite(cpu, va, 9UL), $"write 0x{va:x}");
                }

                Assert.Equal(7UL, mm.Read<ulong>(cpu, a));
                mm.Unmap(cpu, a, 4096);
            });
        }

        ledger.AssertBalanced();
    }

    [Fact]
    public void ACpuIdOutOfRangeIsRejected()
    {
        using Machine m = ShootdownTests.NewMachine();
        Assert.Throws<ArgumentOutOfRangeException>(() => m.Run(99, _ => { }));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.Run(-1, _ => { }));
        Assert.Throws<ArgumentOutOfRangeException>(() => { _ = m.RunAsync(2, _ => { }); });
        Assert.Throws<ArgumentOutOfRangeException>(() => m.Cpu(2));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.RunOn([0, 5], _ => { }));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(8)]
    [InlineData(100)]
    [InlineData(255)]
    [InlineData(-256)]
    public void ATlbSizeThatIsNotAPowerOfTwoInRangeIsRejected(int entries)
    {
        Assert.Equal("entries", Assert.Throws<ArgumentOutOfRangeException>(() => new Tlb(entries)).ParamName);
        var options = new MachineOptions { CpuCount = 1, MemoryBytes = 1 << 20, TlbEntries = entries };
        Assert.Equal(nameof(MachineOptions.TlbEntries), Assert.Throws<ArgumentOutOfRangeException>(() => new Machine(options)).ParamName);
    }

    [Fact]
    public void BadMachineOptionsAreRejectedNamingTheOption()
    {
        Assert.Throws<ArgumentNullException>(() => new Machine(null!));
        (MachineOptions Options, string Name)[] cases =
        [
            (new MachineOptions { CpuCount = 0, MemoryBytes = 1 << 20 }, nameof(MachineOptions.CpuCount)),
            (new MachineOptions { CpuCount = MachineOptions.MaxCpus + 1, MemoryBytes = 1 << 20 }, nameof(MachineOptions.CpuCount)),
            (new MachineOptions { CpuCount = 1, MemoryBytes = 4096 }, nameof(MachineOptions.MemoryBytes)),
            (new MachineOptions { CpuCount = 1, MemoryBytes = -1 }, nameof(MachineOptions.MemoryBytes)),
            (new MachineOptions { CpuCount = 1, MemoryBytes = 1 << 20, WatchdogTimeout = TimeSpan.Zero }, nameof(MachineOptions.WatchdogTimeout)),
            (new MachineOptions { CpuCount = 1, MemoryBytes = 1 << 20, WatchdogTimeout = TimeSpan.FromSeconds(-1) }, nameof(MachineOptions.WatchdogTimeout)),
            (new MachineOptions { CpuCount = 1, MemoryBytes = 1 << 20, TlbEntries = 1 << 21 }, nameof(MachineOptions.TlbEntries)),
        ];
        foreach ((MachineOptions options, string name) in cases)
        {
            Assert.Equal(name, Assert.Throws<ArgumentOutOfRangeException>(() => new Machine(options)).ParamName);
        }
    }

    [Fact]
    public void EnablingInterruptsThatWereNotDisabledIsABug()
    {
        using Machine m = ShootdownTests.NewMachine();
        CpuException e = Assert.Throws<CpuException>(() => m.Run(1, cpu => cpu.LocalIrqEnable()));
        Assert.Equal(1, e.CpuId);
        Assert.IsType<InvalidOperationException>(e.InnerException);
        m.Run(1, cpu =>
        {
            cpu.LocalIrqDisable();
            cpu.LocalIrqDisable();
            cpu.LocalIrqEnable();
            Assert.True(cpu.IrqsDisabled);
            cpu.LocalIrqEnable();
            Assert.False(cpu.IrqsDisabled);
            Assert.Throws<InvalidOperationException>(cpu.LocalIrqEnable);
        });
    }

    [Fact]
    public void SleepingOrShootingDownWithInterruptsDisabledIsABug()
    {
        using Machine m = ShootdownTests.NewMachine();
        var context = new TlbContext();
        m.Run(0, cpu =>
        {
            cpu.LocalIrqDisable();
            Assert.Throws<InvalidOperationException>(cpu.PrepareToBlock);
            Assert.False(cpu.IsLazy);
            Assert.Throws<InvalidOperationException>(() => cpu.Shootdown(context, 0x10000, 0x11000));
            cpu.LocalIrqEnable();
            cpu.PrepareToBlock();
            Assert.True(cpu.IsLazy);
            cpu.FinishBlock();
            Assert.False(cpu.IsLazy);
        });
    }

    [Fact]
    public void WorkThatThrowsSurfacesAsACpuExceptionAndTheCpuStaysUsable()
    {
        using Machine m = ShootdownTests.NewMachine();
        CpuException e = Assert.Throws<CpuException>(() => m.Run(1, _ => throw new FormatException("boom")));
        Assert.Equal(1, e.CpuId);
        Assert.IsType<FormatException>(e.InnerException);
        Assert.Contains("CPU 1", e.Message);

        // Returning with interrupts disabled is reported too, and the CPU comes back with them enabled.
        e = Assert.Throws<CpuException>(() => m.Run(0, cpu => cpu.LocalIrqDisable()));
        Assert.Equal(0, e.CpuId);
        Assert.IsType<InvalidOperationException>(e.InnerException);
        Task failed = m.RunAsync(1, _ => throw new InvalidTimeZoneException());
        Assert.Throws<AggregateException>(() => failed.Wait(Spin.HandOff));
        Assert.IsType<InvalidTimeZoneException>(Assert.IsType<CpuException>(failed.Exception!.InnerException).InnerException);

        Assert.Equal(1, m.Run(1, cpu => cpu.Id));
        Assert.False(m.Run(0, cpu => cpu.IrqsDisabled));
        m.RunOnAll(cpu => Assert.False(cpu.IrqsDisabled));
    }

    [Fact]
    public void ACpuWaitingForWorkQueuedToItselfFailsInsteadOfDeadlocking()
    {
        using Machine m = ShootdownTests.NewMachine();
        Task nested = m.RunAsync(1, cpu =>
        {
            Assert.Throws<InvalidOperationException>(() => m.Run(1, _ => { }));
            Assert.Throws<InvalidOperationException>(() => m.Run(1, c => c.Id));
            Assert.Throws<InvalidOperationException>(() => m.RunOnAll(_ => { }));
        });
        Spin.Join(Spin.HandOff, "Nested Run on the same CPU", nested);
    }

    [Fact]
    public void DisposingTheMachineLeavesNoCpuThreadRunning()
    {
        var m = new Machine(new MachineOptions { CpuCount = 3, MemoryBytes = 1 << 20 });
        IReadOnlyList<Thread> threads = m.Threads;
        Assert.Equal(3, threads.Count);
        Assert.All(threads, t => Assert.StartsWith("specvm-cpu", t.Name));
        Assert.All(threads, t => Assert.True(t.IsAlive));
        m.RunOnAll(_ => { });
        m.Dispose();
        Assert.All(threads, t => Assert.False(t.IsAlive, $"{t.Name} is still alive after Dispose."));
        Assert.Throws<ObjectDisposedException>(() => { _ = m.RunAsync(0, _ => { }); });
        m.Dispose(); // Twice is harmless.
    }
}
