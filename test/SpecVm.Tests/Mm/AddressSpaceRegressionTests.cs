using System.Diagnostics;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Paging;
using SpecVm.Smp;
using Xunit.Abstractions;

namespace SpecVm.Tests.Mm;

/// <summary>Bugs found in the address space, pinned so they stay fixed.</summary>
[Collection(MachineCollection.Name)]
public sealed class AddressSpaceRegressionTests(ITestOutputHelper output)
{
    private const ulong Page = 4096;

    /// <summary>
    /// will-it-scale's loop (map 128 MiB, touch, unmap) must land on the same range each time, as Linux's top-down
    /// search for the highest gap does. It used to march down the address space, 128 MiB a step, needing a new PMD
    /// table every eight steps; upper-level tables are never freed, so page-table frames leaked without bound.
    /// </summary>
    [Fact]
    public void RepeatedMapAndUnmapReusesTheRangeSoPageTablesStayBounded()
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        var addresses = new HashSet<ulong>();
        long tablesAfterFirst = 0;
        machine.Run(0, cpu =>
        {
            for (int i = 0; i < 64; i++)
            {
                ulong a = mm.Map(cpu, 128UL << 20, Protection.ReadWrite);
                mm.Write(cpu, a, 1UL);
                mm.Unmap(cpu, a, 128UL << 20);
                addresses.Add(a);
                if (i == 0)
                {
                    tablesAfterFirst = mm.PageTable.TablePages;
                }
            }
        });
        output.WriteLine($"{addresses.Count} distinct address(es); table pages {mm.PageTable.TablePages} (after the first round {tablesAfterFirst})");
        Assert.Single(addresses);
        Assert.Equal(tablesAfterFirst, mm.PageTable.TablePages);
        TestMachines.AssertNoViolations(mm);
    }

    /// <summary>
    /// Unmapping a sparse range (here all of user space, around two one-page mappings) zaps where the VMAs were, not
    /// every 2 MiB of the range: it used to walk 67 million PTE-table slots under the mmap lock (7.5 s in Debug).
    /// </summary>
    [Fact]
    public void UnmappingASparseRangeOnlyVisitsWhereTheVmasWere()
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        TimeSpan took = machine.Run(0, cpu =>
        {
            ulong low = mm.Map(cpu, Page, Protection.ReadWrite, fixedAddress: AddressSpace.MinAddress);
            ulong high = mm.Map(cpu, Page, Protection.ReadWrite);
            mm.Write(cpu, low, 1UL);
            mm.Write(cpu, high, 2UL);
            var clock = Stopwatch.StartNew();
            mm.Unmap(cpu, AddressSpace.MinAddress, PageTable.UserTop - AddressSpace.MinAddress);
            Assert.Equal(AccessResult.SegmentationFault, mm.TryRead(cpu, high, out ulong _));
            return clock.Elapsed;
        });
        output.WriteLine($"unmapping all of user space took {took.TotalMilliseconds:F1} ms");
        Assert.Equal(0, mm.Vmas.Count);
        Assert.True(took < TimeSpan.FromSeconds(2), $"Unmapping all of user space took {took}: it walks the whole range, not the VMAs.");
        TestMachines.AssertNoViolations(mm);
    }

    /// <summary>
    /// A CPU's per-CPU frame cache (up to 64 frames) must not hide free frames from the others: before a fault reports
    /// out of memory the allocator drains the other CPUs' caches, as Linux drains the per-CPU lists (drain_all_pages).
    /// </summary>
    [Fact]
    public void OutOfMemoryIsNotReportedWhileAnotherCpuCachesFreeFrames()
    {
        using Machine machine = TestMachines.Create(2, 1);
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        machine.Run(1, cpu =>
        {
            ulong a = mm.Map(cpu, 40 * Page, Protection.ReadWrite);
            for (ulong i = 0; i < 40; i++)
            {
                mm.Write(cpu, a + (i * Page), 1UL);
            }

            mm.Unmap(cpu, a, 40 * Page); // The 40 frames go to CPU 1's cache.
        });
        machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, 256 * Page, Protection.ReadWrite);
            ulong n = 0;
            while (mm.TryWrite(cpu, a + (n * Page), 1UL) == AccessResult.Ok)
            {
                n++;
            }

            output.WriteLine($"out of memory after {n} pages; census {machine.Memory.Census()}");
            Assert.Equal(0, machine.Memory.Census().Free);
        });
    }
}
