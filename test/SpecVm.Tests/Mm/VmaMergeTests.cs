using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Tests.Mm;

/// <summary>Linux's vma_merge on Map and Protect: compatible neighbours become one VMA, so VMAs never fragment.</summary>
[Collection(MachineCollection.Name)]
public class VmaMergeTests
{
    private const ulong Page = 4096;

    public static TheoryData<string> Strategies => [.. TestMachines.StrategyNames];

    [Theory]
    [MemberData(nameof(Strategies))]
    public void ProtectBackAndForthLeavesOneVma(string strategy)
    {
        using Machine machine = TestMachines.Create(2, 16);
        using var mm = new AddressSpace(machine, TestMachines.Strategy(strategy));
        machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, 16 * Page, Protection.ReadWrite);
            for (ulong p = 0; p < 16; p++)
            {
                mm.Write(cpu, a + (p * Page), p);
            }

            mm.Protect(cpu, a + (4 * Page), 4 * Page, Protection.Read);
            Assert.Equal(3, mm.Vmas.Count);
            mm.Protect(cpu, a + (10 * Page), 2 * Page, Protection.Read);
            Assert.Equal(5, mm.Vmas.Count);
            mm.Protect(cpu, a + (2 * Page), 12 * Page, Protection.ReadWrite); // Spans five VMAs, merges all.
            Assert.Equal(1, mm.Vmas.Count);
            VmaInfo only = Assert.Single(mm.Vmas.Snapshot());
            Assert.Equal((a, a + (16 * Page), Protection.ReadWrite), (only.Start, only.End, only.Protection));
            for (ulong p = 0; p < 16; p++)
            {
                Assert.Equal(p, mm.Read<ulong>(cpu, a + (p * Page)));
                mm.Write(cpu, a + (p * Page), p + 100); // Writable again everywhere.
            }
        });
        TestMachines.AssertNoViolations(mm);
    }

    [Fact]
    public void FileMappingsMergeOnlyWhenTheyContinueTheSameFile()
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, TestMachines.Strategy("mmap-lock"));
        using var file = new SimFile(machine, 16 * (long)Page);
        using var other = new SimFile(machine, 16 * (long)Page);
        machine.Run(0, cpu =>
        {
            ulong a = 0x4000_0000;
            mm.Map(cpu, 4 * Page, Protection.Read, MappingKind.SharedFile, file, 0, fixedAddress: a);
            mm.Map(cpu, 4 * Page, Protection.Read, MappingKind.SharedFile, file, 4 * (long)Page, fixedAddress: a + (4 * Page)); // Continues: merges.
            Assert.Equal(1, mm.Vmas.Count);
            mm.Map(cpu, 4 * Page, Protection.Read, MappingKind.SharedFile, file, 0, fixedAddress: a + (8 * Page)); // Pages 0..3 again: no.
            mm.Map(cpu, 4 * Page, Protection.Read, MappingKind.SharedFile, other, 12 * (long)Page, fixedAddress: a + (12 * Page)); // Another file: no.
            Assert.Equal(3, mm.Vmas.Count);
            Assert.Equal(2, file.Mappings); // The merged VMA and the one at +8 pages.
            mm.Protect(cpu, a + Page, 2 * Page, Protection.None);
            mm.Protect(cpu, a + Page, 2 * Page, Protection.Read);
            Assert.Equal(3, mm.Vmas.Count);
            Assert.Equal(0L, mm.Vmas.Snapshot()[0].FilePageOffset);
            Assert.Equal(8 * Page, mm.Vmas.Snapshot()[0].Length);
        });
        Assert.Equal(2, file.Mappings);
        Assert.Equal(1, other.Mappings);
        TestMachines.AssertNoViolations(mm, file, other);
    }
}
