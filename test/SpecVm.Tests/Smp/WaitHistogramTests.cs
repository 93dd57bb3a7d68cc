using System.Diagnostics;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;
using SpecVm.Sync;
using SpecVm.Tests.Mm;

namespace SpecVm.Tests.Smp;

/// <summary>
/// The wait histograms (<see cref="WaitHistogram"/>): a wait that waited lands in its kind's bucket and total; an
/// uncontended path records nothing. Each contended test fails if its recording site is removed.
/// </summary>
[Collection(MachineCollection.Name)]
public class WaitHistogramTests
{
    private const ulong Page = 4096;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    [Fact]
    public void AFaultBehindAWriterRecordsItsReadWaitInTheMmapReadHistogram()
    {
        using Machine machine = TestMachines.Create(2, 32);
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        ulong a = machine.Run(1, cpu => mm.Map(cpu, 4 * Page, Protection.ReadWrite));
        CounterSnapshot before = machine.Snapshot();

        // CPU 0 holds the mmap lock for write (straight on the semaphore: no write wait, no hold accounting), CPU 1
        // faults and must wait for it; 20 ms puts the wait well above 100 µs even on a loaded host.
        machine.Run(0, cpu => mm.MmapLock.WriteLock(cpu));
        Task fault = machine.RunAsync(1, cpu => mm.Write(cpu, a, 7UL));
        Thread.Sleep(20);
        Assert.False(fault.IsCompleted, "The fault did not wait for the writer.");
        machine.Run(0, _ => mm.MmapLock.WriteUnlock());
        Assert.True(fault.Wait(Bound), "The fault never finished.");

        CounterSnapshot d = machine.Snapshot().Minus(before);
        long[] buckets = Buckets(d, WaitKind.MmapRead);
        Assert.True(buckets.Sum() == 1, $"One read wait expected, buckets {string.Join(",", buckets)}.");
        Assert.True(buckets[3] + buckets[4] + buckets[5] == 1, $"The wait should be 100 µs or more, buckets {string.Join(",", buckets)}.");
        Assert.True(d[WaitHistogram.TicksCounter(WaitKind.MmapRead)] >= Stopwatch.Frequency / 10_000, "The read wait's total ticks are below 100 µs.");
        Assert.Equal(0, Buckets(d, WaitKind.MmapWrite).Sum());
    }

    [Fact]
    public void UncontendedFaultsMapsAndUnmapsRecordNoWaits()
    {
        using Machine machine = TestMachines.Create(1, 32);
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        CounterSnapshot before = machine.Snapshot();
        machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, 16 * Page, Protection.ReadWrite);
            for (ulong p = 0; p < 16; p++)
            {
                mm.Write(cpu, a + (p * Page), p);
            }

            mm.Unmap(cpu, a, 16 * Page);
        });

        CounterSnapshot d = machine.Snapshot().Minus(before);
        Assert.True(d[CpuCounter.Faults] >= 16, "The faults did not happen.");
        foreach (WaitKind kind in WaitHistogram.Kinds)
        {
            Assert.True(Buckets(d, kind).Sum() == 0, $"{kind}: an uncontended path recorded a wait.");
            Assert.Equal(0, d[WaitHistogram.TicksCounter(kind)]);
        }
    }

    [Fact]
    public void AShootdownThatInterruptsARunningCpuRecordsItsAckWait()
    {
        using Machine machine = TestMachines.Create(2, 32);
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        ulong a = machine.Run(0, cpu =>
        {
            ulong x = mm.Map(cpu, 4 * Page, Protection.ReadWrite);
            for (ulong p = 0; p < 4; p++)
            {
                mm.Write(cpu, x + (p * Page), p);
            }

            return x;
        });

        // CPU 1 keeps running in the address space (awake, not lazy), so the unmap's shootdown must interrupt it.
        using var running = new ManualResetEventSlim();
        int stop = 0;
        Task reader = machine.RunAsync(1, cpu =>
        {
            mm.Read<ulong>(cpu, a);
            running.Set();
            while (Volatile.Read(ref stop) == 0) // Acquire: sees the test's stop flag promptly.
            {
                mm.Read<ulong>(cpu, a);
            }
        });
        try
        {
            Assert.True(running.Wait(Bound), "CPU 1 never started.");
            CounterSnapshot before = machine.Snapshot();
            machine.Run(0, cpu => mm.Unmap(cpu, a + (3 * Page), Page));
            CounterSnapshot d = machine.Snapshot().Minus(before);
            Assert.True(d[CpuCounter.IpisSent] > 0, "The shootdown sent no IPI (CPU 1 was skipped).");
            Assert.True(Buckets(d, WaitKind.ShootdownAck).Sum() >= 1, "The ack wait was not recorded.");
            Assert.True(d[WaitHistogram.TicksCounter(WaitKind.ShootdownAck)] > 0);
        }
        finally
        {
            Volatile.Write(ref stop, 1); // Release: ends CPU 1's loop.
            Assert.True(reader.Wait(Bound), "CPU 1 did not stop.");
        }
    }

    [Fact]
    public void ASpinOnAHeldPtlIsRecordedInThePtlHistogramAndAFreeOneIsNot()
    {
        using Machine machine = TestMachines.Create(2, 32);
        var box = new PtlBox();
        CounterSnapshot before = machine.Snapshot();
        machine.Run(1, cpu =>
        {
            cpu.LockPtl(ref box.Lock); // Free: no clock read, nothing recorded.
            box.Lock.Unlock(cpu.Id);
        });
        Assert.Equal(0, Buckets(machine.Snapshot().Minus(before), WaitKind.Ptl).Sum());

        box.Lock.Lock(7, null); // Held by an owner that is no CPU of this machine (the test thread).
        Task spin = machine.RunAsync(1, cpu => cpu.LockPtl(ref box.Lock));
        Thread.Sleep(5);
        Assert.False(spin.IsCompleted, "CPU 1 took a held PTL.");
        box.Lock.Unlock(7);
        Assert.True(spin.Wait(Bound), "CPU 1 never took the PTL.");
        machine.Run(1, cpu => box.Lock.Unlock(cpu.Id));

        CounterSnapshot d = machine.Snapshot().Minus(before);
        Assert.True(Buckets(d, WaitKind.Ptl).Sum() == 1, "The PTL spin was not recorded once.");
        Assert.True(d[WaitHistogram.TicksCounter(WaitKind.Ptl)] > 0);
    }

    [Fact]
    public void BucketsAreDecadesAndEachKindsCountersAreNamedForIt()
    {
        long us = Stopwatch.Frequency / 1_000_000;
        Assert.Equal(0, WaitHistogram.Bucket(1));
        Assert.Equal(1, WaitHistogram.Bucket(us));
        Assert.Equal(1, WaitHistogram.Bucket((10 * us) - 1));
        Assert.Equal(2, WaitHistogram.Bucket(10 * us));
        Assert.Equal(3, WaitHistogram.Bucket(100 * us));
        Assert.Equal(4, WaitHistogram.Bucket(1000 * us));
        Assert.Equal(5, WaitHistogram.Bucket(10_000 * us));
        Assert.Equal(5, WaitHistogram.Bucket(long.MaxValue));
        Assert.Equal(WaitHistogram.BucketCount, WaitHistogram.BucketLabels.Count);
        foreach (WaitKind kind in WaitHistogram.Kinds)
        {
            string prefix = kind + "Wait";
            for (int b = 0; b < WaitHistogram.BucketCount; b++)
            {
                Assert.StartsWith(prefix, WaitHistogram.Counter(kind, b).ToString(), StringComparison.Ordinal);
            }

            Assert.Equal(prefix + "Ticks", WaitHistogram.TicksCounter(kind).ToString());
        }

        Assert.True((int)CpuCounter.Count > (int)WaitHistogram.TicksCounter(WaitKind.ShootdownAck));
    }

    private static long[] Buckets(CounterSnapshot d, WaitKind kind) =>
        Enumerable.Range(0, WaitHistogram.BucketCount).Select(b => d[WaitHistogram.Counter(kind, b)]).ToArray();

    /// <summary>A PtLock in a heap object, shared by reference between two threads (never copied).</summary>
    private sealed class PtlBox
    {
        public PtLock Lock;
    }
}
