using SpecVm.Mm;
using SpecVm.Paging;
using SpecVm.Smp;

namespace SpecVm.Tests.Mm;

/// <summary>Unmap frees the page tables it empties, every level (Linux free_pgtables), after the shootdown.</summary>
[Collection(MachineCollection.Name)]
public class PageTableFreeTests
{
    private const ulong Page = 4096;

    public static TheoryData<string> Strategies => [.. TestMachines.StrategyNames];

    [Theory]
    [MemberData(nameof(Strategies))]
    public void AChurnOfMapAndUnmapReturnsEveryTableButTheRoot(string strategy)
    {
        using Machine machine = TestMachines.Create(2, 32);
        using var mm = new AddressSpace(machine, TestMachines.Strategy(strategy));
        long tablesAtStart = machine.Memory.Census().PageTables;
        long freeAtStart = machine.Memory.Census().Free;
        Assert.Equal(1, mm.PageTable.TablePages); // The root.
        var rng = new Random(14);
        long rounds = 0;
        long peak = 0;
        var until = DateTime.UtcNow + TimeSpan.FromMilliseconds(400);
        machine.Run(0, cpu =>
        {
            while (DateTime.UtcNow < until || rounds < 64)
            {
                // A region in one of 64 different PUDs and PMDs, so that without freeing every level the tables pile up.
                ulong at = ((ulong)rng.Next(1, 64) << 39) | ((ulong)rng.Next(0, 512) << 30) | ((ulong)rng.Next(0, 512) << 21);
                ulong length = (ulong)rng.Next(1, 8) * Page;
                mm.Map(cpu, length, Protection.ReadWrite, fixedAddress: at);
                for (ulong off = 0; off < length; off += Page)
                {
                    mm.Write(cpu, at + off, off);
                }

                peak = Math.Max(peak, mm.PageTable.TablePages);
                mm.Unmap(cpu, at, length);
                rounds++;
            }
        });
        Assert.True(peak >= 4, $"The churn never built a full path of tables (peak {peak}).");
        Assert.Equal(1, mm.PageTable.TablePages);
        machine.Srcu.Barrier();
        Assert.Equal(tablesAtStart, machine.Memory.Census().PageTables);
        Assert.Equal(freeAtStart, machine.Memory.Census().Free);
        TestMachines.AssertNoViolations(mm);
    }

    [Fact]
    public void TablesStayWhileAnotherVmaSharesTheirRegion()
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, TestMachines.Strategy("mmap-lock"));
        machine.Run(0, cpu =>
        {
            ulong a = 0x40_0000_0000; // Two mappings in one 1 GiB region, in different 2 MiB regions.
            ulong b = a + (8UL << 20);
            mm.Map(cpu, Page, Protection.ReadWrite, fixedAddress: a);
            mm.Map(cpu, Page, Protection.ReadWrite, fixedAddress: b);
            mm.Write(cpu, a, 1UL);
            mm.Write(cpu, b, 2UL);
            Assert.Equal(5, mm.PageTable.TablePages); // Root, PUD, PMD, two PTE tables.
            mm.Unmap(cpu, a, Page);
            Assert.Equal(4, mm.PageTable.TablePages); // Only a's PTE table went.
            Assert.Equal(2UL, mm.Read<ulong>(cpu, b));
            mm.Unmap(cpu, b, Page);
            Assert.Equal(1, mm.PageTable.TablePages);
        });
        TestMachines.AssertNoViolations(mm);
    }
}
