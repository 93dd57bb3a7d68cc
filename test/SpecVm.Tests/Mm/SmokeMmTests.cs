using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Tests.Mm;

public class SmokeMmTests
{
    public static TheoryData<string> Strategies => [.. TestMachines.StrategyNames];

    internal static FaultStrategy Make(string name) => StrategyCatalog.Create(name);

    [Theory]
    [MemberData(nameof(Strategies))]
    public void MapWriteReadUnmapBalancesFrames(string strategy)
    {
        using var machine = new Machine(new MachineOptions { CpuCount = 2, MemoryBytes = 64L << 20 });
        long freeBefore = machine.Memory.Census().Free;
        using (var mm = new AddressSpace(machine, Make(strategy)))
        {
            machine.Run(0, cpu =>
            {
                ulong a = mm.Map(cpu, 4 << 20, Protection.ReadWrite);
                for (ulong off = 0; off < 4 << 20; off += 4096)
                {
                    mm.Write(cpu, a + off, off + 1);
                }

                for (ulong off = 0; off < 4 << 20; off += 4096)
                {
                    Assert.Equal(off + 1, mm.Read<ulong>(cpu, a + off));
                }

                Assert.Equal(AccessResult.SegmentationFault, mm.TryRead(cpu, 0x1000, out ulong _));
                mm.Protect(cpu, a, 4096, Protection.Read);
                Assert.Equal(AccessResult.SegmentationFault, mm.TryWrite(cpu, a, 5UL));
                Assert.Equal(1UL, mm.Read<ulong>(cpu, a));
                mm.Unmap(cpu, a, 4 << 20);
                Assert.Equal(AccessResult.SegmentationFault, mm.TryRead(cpu, a, out ulong _));
            });
            machine.Run(1, cpu => { });
        }

        machine.Srcu.Barrier();
        Assert.Equal(freeBefore, machine.Memory.Census().Free);
    }

    [Theory]
    [MemberData(nameof(Strategies))]
    public void TwoCpusFaultWhileAnotherUnmaps(string strategy)
    {
        using var machine = new Machine(new MachineOptions { CpuCount = 2, MemoryBytes = 256L << 20 });
        using var mm = new AddressSpace(machine, Make(strategy));
        ulong shared = machine.Run(0, cpu => mm.Map(cpu, 8 << 20, Protection.ReadWrite));
        var deadline = DateTime.UtcNow.AddSeconds(1);
        Task t0 = machine.RunAsync(0, cpu =>
        {
            while (DateTime.UtcNow < deadline)
            {
                ulong a = mm.Map(cpu, 1 << 20, Protection.ReadWrite);
                for (ulong off = 0; off < 1 << 20; off += 4096)
                {
                    mm.Write(cpu, a + off, 7UL);
                }

                mm.Unmap(cpu, a, 1 << 20);
            }
        });
        Task t1 = machine.RunAsync(1, cpu =>
        {
            ulong round = 0;
            while (DateTime.UtcNow < deadline)
            {
                round++;
                for (ulong off = 0; off < 8 << 20; off += 4096)
                {
                    mm.Write(cpu, shared + off, round);
                }

                for (ulong off = 0; off < 8 << 20; off += 4096)
                {
                    Assert.Equal(round, mm.Read<ulong>(cpu, shared + off));
                }

                mm.DontNeed(cpu, shared, 8 << 20);
            }
        });
        Task.WaitAll(t0, t1);
        Assert.Equal(0, mm.Slab.PoisonedReads);
    }
}
