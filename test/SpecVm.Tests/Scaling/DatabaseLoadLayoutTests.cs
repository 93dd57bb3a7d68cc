using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Paging;
using SpecVm.Smp;
using SpecVm.Workloads;

namespace SpecVm.Tests.Scaling;

/// <summary>The database load's slices start on 2 MiB boundaries, so no two loaders share a PTE table or its PTL.</summary>
public class DatabaseLoadLayoutTests
{
    [Theory]
    [InlineData(1L << 20)]
    [InlineData(4L << 20)]
    public void LoaderSlicesAreTwoMebibyteAlignedBetweenGuardPages(long sliceBytes)
    {
        using var machine = new Machine(new MachineOptions { CpuCount = 2, MemoryBytes = 64L << 20 });
        var db = new DatabaseLoad(sliceBytes);
        db.Setup(machine, new MmapLockStrategy(), 2);
        try
        {
            AddressSpace mm = Assert.Single(db.AddressSpaces);
            IReadOnlyList<VmaInfo> vmas = mm.Vmas.Snapshot();
            Assert.Equal(3, vmas.Count);
            Assert.Equal(Protection.None, vmas[0].Protection);
            Assert.Equal(Protection.None, vmas[2].Protection);
            VmaInfo region = vmas[1];
            Assert.Equal(0UL, region.Start % PageTable.PteTableSpan);
            ulong stride = Math.Max((ulong)sliceBytes, PageTable.PteTableSpan);
            Assert.Equal(2 * stride, region.Length);
        }
        finally
        {
            db.Teardown();
        }
    }
}
