using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Tests.Mm;

/// <summary>The unmap gather's forced flushes, as Linux's zap_pte_range: a full batch, and dirty shared-file pages.</summary>
[Collection(MachineCollection.Name)]
public class GatherTests
{
    private const ulong Page = 4096;
    private const ulong Table = 2UL << 20;

    [Fact]
    public void AFullGatherFlushesMidZapAndFreesItsFrames()
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, new MmapLockStrategy(), new AddressSpaceOptions { ZapBatchPages = 8 });
        machine.Run(0, cpu =>
        {
            // A neighbour keeps the PTE table, so the unmap frees no table: every shootdown is a gather flush.
            ulong keep = mm.Map(cpu, Page, Protection.ReadWrite, fixedAddress: 0x4000_0000);
            mm.Write(cpu, keep, 1UL);
            ulong a = mm.Map(cpu, 20 * Page, Protection.ReadWrite, fixedAddress: 0x4000_0000 + (4 * Page));
            for (ulong p = 0; p < 20; p++)
            {
                mm.Write(cpu, a + (p * Page), p);
            }

            long before = cpu.Read(CpuCounter.Shootdowns);
            mm.Unmap(cpu, a, 20 * Page);
            Assert.Equal(3, cpu.Read(CpuCounter.Shootdowns) - before); // At 8 and 16 pages, then the last 4.
        });
        machine.Srcu.Barrier();
        Assert.Equal(0, machine.Memory.Census().AwaitingFlush);
        TestMachines.AssertNoViolations(mm);
    }

    [Fact]
    public void DirtySharedFilePagesForceAFlushPerPteTable()
    {
        using Machine machine = TestMachines.Create(1, 64);
        using var file = new SimFile(machine, (long)(6 * Table));
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        machine.Run(0, cpu =>
        {
            ulong keep = mm.Map(cpu, Page, Protection.ReadWrite, fixedAddress: 0x4000_0000 - Page);
            mm.Write(cpu, keep, 1UL);
            ulong a = mm.Map(cpu, 6 * Table, Protection.ReadWrite, MappingKind.SharedFile, file, fixedAddress: 0x4000_0000);
            for (ulong t = 0; t < 6; t++)
            {
                if (t != 2)
                {
                    mm.Write(cpu, a + (t * Table), t); // Dirty pages in five of the six PTE tables.
                }
                else
                {
                    mm.Read<ulong>(cpu, a + (t * Table)); // Table 2: mapped, clean.
                }
            }

            long before = cpu.Read(CpuCounter.Shootdowns);
            mm.Unmap(cpu, a, 6 * Table);

            // Five forced flushes under the PTL, and the final one for the freed page tables.
            Assert.Equal(6, cpu.Read(CpuCounter.Shootdowns) - before);
        });
        TestMachines.AssertNoViolations(mm, file);
    }
}
