using SpecVm.Faults;
using SpecVm.Smp;
using SpecVm.Workloads;

namespace SpecVm.Tests.Scaling;

public class WorkloadAllocationTests
{
    /// <summary>
    /// Runs two rounds of batches of task 0 on CPU 0 and returns the bytes allocated by the batches of the second round
    /// that neither map nor unmap nor madvise (the model's Map/Unmap/DontNeed allocate their VMA lists; the touch loop must not).
    /// </summary>
    private static long TouchOnlyAllocatedBytes(Workload w, int batchesPerRound)
    {
        using var machine = new Machine(new MachineOptions { CpuCount = 1, MemoryBytes = 64L << 20 });
        w.Setup(machine, new SpeculativeStrategy(), 1);
        try
        {
            return machine.Run(0, cpu =>
            {
                for (int i = 0; i < batchesPerRound; i++)
                {
                    w.RunOperationBatch(cpu, 0); // Warm-up round: JIT, tables, frame caches.
                }

                w.RunOperationBatch(cpu, 0); // First batch of the round maps.
                long before = GC.GetAllocatedBytesForCurrentThread();
                for (int i = 1; i < batchesPerRound - 1; i++)
                {
                    w.RunOperationBatch(cpu, 0);
                }

                return GC.GetAllocatedBytesForCurrentThread() - before;
            });
        }
        finally
        {
            w.Teardown();
        }
    }

    [Fact]
    public void PageFaultTouchBatchesDoNotAllocate()
    {
        // 4 MiB = 1024 pages = 4 batches of 256: map+touch, touch, touch, touch+unmap.
        Assert.Equal(0, TouchOnlyAllocatedBytes(new PageFault1(4L << 20), 4));
        Assert.Equal(0, TouchOnlyAllocatedBytes(new PageFault3(4L << 20), 4));
    }

    [Fact]
    public void DatabaseLoadLoaderBatchesDoNotAllocate()
    {
        // A 4 MiB slice = 4 batches; the last one also drops the slice with DontNeed.
        Assert.Equal(0, TouchOnlyAllocatedBytes(new DatabaseLoad(4L << 20, 0), 4));
    }

    [Fact]
    public void NativeTouchBatchesDoNotAllocate()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        Assert.Equal(0, TouchOnlyAllocatedBytes(new NativePageFault(1, 4L << 20), 4));
        Assert.Equal(0, TouchOnlyAllocatedBytes(new NativeDatabaseLoad(4L << 20, 0), 4));
    }
}
