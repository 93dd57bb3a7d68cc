using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using SpecVm.Sync;
using Xunit.Abstractions;

namespace SpecVm.Tests.Layout;

public sealed unsafe class SyncLayoutTests(ITestOutputHelper output)
{
    [Fact]
    public void RwSemaphoreCountWordHasALineToItself()
    {
        var sem = new RwSemaphore();
        ref RwSemaphore.StatsLine stats = ref Stats(sem);
        var table = new LayoutTable(nameof(RwSemaphore)).AddObjectHeader()
            .Add("_countStorage", ObjectOffsets.Of(sem, ref CountStorage(sem)), IntPtr.Size)
            .Add("_sleepLock", ObjectOffsets.Of(sem, ref SleepLock(sem)), IntPtr.Size)
            .Add("_sleepers", ObjectOffsets.Of(sem, ref Sleepers(sem)), sizeof(int))
            .Add("_writerOwnerThread", ObjectOffsets.Of(sem, ref WriterOwnerThread(sem)), sizeof(int))
            .Add("_readStripes", ObjectOffsets.Of(sem, ref ReadStripes(sem)), IntPtr.Size)
            .Add("_stats", ObjectOffsets.Of(sem, ref stats), Unsafe.SizeOf<RwSemaphore.StatsLine>())
            .Add("_stats.WriteAcquisitions", ObjectOffsets.Of(sem, ref stats.WriteAcquisitions), sizeof(long))
            .Add("_stats.WriteStart", ObjectOffsets.Of(sem, ref stats.WriteStart), sizeof(long));
        output.WriteLine(table.ToString());

        // The count is not in the object at all (nothing of ours, not the header, not the GC's next object can share its
        // line): it lives in a pinned block of its own, a HotLine, with a line of padding each side.
        var storage = Assert.IsType<RwSemaphore.HotLine[]>(CountStorage(sem));
        Assert.Single(storage);
        byte* origin = (byte*)Unsafe.AsPointer(ref storage[0]);
        var block = new LayoutTable($"{nameof(RwSemaphore)} count block (pinned {nameof(RwSemaphore.HotLine)}[1])", (nuint)origin)
            .Add("(array data before)", -2 * sizeof(long), 2 * sizeof(long))
            .Add("Count", (byte*)sem.CountAddress - origin, sizeof(long))
            .Add("(data after)", Unsafe.SizeOf<RwSemaphore.HotLine>(), sizeof(long));
        output.WriteLine(block.ToString());
        block.AssertTrue(Unsafe.SizeOf<RwSemaphore.HotLine>() == 3 * CacheLine.Size, "HotLine should be the count with a line of padding each side.");
        block.AssertOffset("Count", CacheLine.Size);
        block.AssertNeverShareALine("Count", "(array data before)");
        block.AssertNeverShareALine("Count", "(data after)");

        // The pointer is fixed at construction, so the block must never move: a compacting collection leaves it in place.
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        Assert.True(origin == (byte*)Unsafe.AsPointer(ref storage[0]), "The count's block moved: the semaphore's pointer would dangle.");
        Assert.True(sem.TryWriteLock());
        Assert.True(sem.IsWriteLocked);
        sem.WriteUnlock();
    }

    [Fact]
    public void PaddedValuesSitOneLineInWithALineOfPaddingOnEachSide()
    {
        PaddedLong paddedLong = default;
        var longTable = new LayoutTable(nameof(PaddedLong))
            .Add("(data before)", -sizeof(long), sizeof(long))
            .Add("Value", Unsafe.ByteOffset(ref Unsafe.As<PaddedLong, byte>(ref paddedLong), ref Unsafe.As<long, byte>(ref paddedLong.Value)), sizeof(long))
            .Add("(data after)", Unsafe.SizeOf<PaddedLong>(), sizeof(long));
        output.WriteLine(longTable.ToString());
        longTable.AssertOffset("Value", CacheLine.Size);
        longTable.AssertTrue(Unsafe.SizeOf<PaddedLong>() == 3 * CacheLine.Size, $"PaddedLong is {Unsafe.SizeOf<PaddedLong>()} bytes, expected {3 * CacheLine.Size}.");
        longTable.AssertNeverShareALine("Value", "(data before)");
        longTable.AssertNeverShareALine("Value", "(data after)");

        PaddedInt paddedInt = default;
        var intTable = new LayoutTable(nameof(PaddedInt))
            .Add("(data before)", -sizeof(long), sizeof(long))
            .Add("Value", Unsafe.ByteOffset(ref Unsafe.As<PaddedInt, byte>(ref paddedInt), ref Unsafe.As<int, byte>(ref paddedInt.Value)), sizeof(int))
            .Add("(data after)", Unsafe.SizeOf<PaddedInt>(), sizeof(long));
        intTable.AssertOffset("Value", CacheLine.Size);
        intTable.AssertTrue(Unsafe.SizeOf<PaddedInt>() == 3 * CacheLine.Size, $"PaddedInt is {Unsafe.SizeOf<PaddedInt>()} bytes.");
        intTable.AssertNeverShareALine("Value", "(data before)");
        intTable.AssertNeverShareALine("Value", "(data after)");

        // In an array of padded values, neighbours' values never share a line either.
        var array = new PaddedLong[2];
        long apart = Unsafe.ByteOffset(ref array[0].Value, ref array[1].Value);
        Assert.True(LayoutTable.NeverShareALine(0, sizeof(long), apart, sizeof(long)), $"Neighbouring PaddedLong values are only {apart} bytes apart.");
    }

    [Fact]
    public void PerCpuSlotsAreLineAlignedWithAWholeLineStride()
    {
        AssertPerCpuLayout<byte>(3);
        AssertPerCpuLayout<long>(4);
        AssertPerCpuLayout<Bytes128>(3);
        AssertPerCpuLayout<Bytes200>(2);
    }

    [Fact]
    public void SrcuSlotsOfDifferentCpusNeverShareALine()
    {
        const int Cpus = 4;
        using var srcu = new Srcu(Cpus);
        PerCpu<Srcu.Slot> slots = Slots(srcu);
        byte* origin = (byte*)Unsafe.AsPointer(ref slots[0]);
        var table = new LayoutTable($"{nameof(Srcu)} per-CPU slots", (nuint)origin);
        for (int cpu = 0; cpu < Cpus; cpu++)
        {
            ref Srcu.Slot slot = ref slots[cpu];
            long at = (byte*)Unsafe.AsPointer(ref slot) - origin;
            table.Add($"cpu {cpu}", at, Unsafe.SizeOf<Srcu.Slot>())
                .Add($"cpu {cpu}.Lock0", at + Unsafe.ByteOffset(ref slot, ref Unsafe.As<long, Srcu.Slot>(ref slot.Lock0)), sizeof(long))
                .Add($"cpu {cpu}.Unlock1", at + Unsafe.ByteOffset(ref slot, ref Unsafe.As<long, Srcu.Slot>(ref slot.Unlock1)), sizeof(long));
        }

        output.WriteLine(table.ToString());
        table.AssertTrue((nuint)origin % CacheLine.Size == 0, "Slot 0 does not start on a line boundary.");
        table.AssertTrue(Unsafe.SizeOf<Srcu.Slot>() <= CacheLine.Size, "One CPU's four counters do not fit one line.");
        for (int a = 0; a < Cpus; a++)
        {
            for (int b = a + 1; b < Cpus; b++)
            {
                table.AssertNeverShareALine($"cpu {a}", $"cpu {b}");
            }
        }
    }

    [Fact]
    public void LineCheckerFlagsFieldsThatCanShareALine()
    {
        // Planted layouts: the checker must say no to each of them, and yes to the exact boundary.
        Unpadded unpadded = default;
        long statsOffset = Unsafe.ByteOffset(ref Unsafe.As<long, byte>(ref unpadded.Count), ref Unsafe.As<long, byte>(ref unpadded.Stats));
        Assert.False(LayoutTable.NeverShareALine(0, sizeof(long), statsOffset, sizeof(long)), "Adjacent fields passed the line check.");
        Assert.False(LayoutTable.NeverShareALine(0, sizeof(long), 64, sizeof(long)), "Fields 64 bytes apart passed (the adjacent-line prefetcher pairs them).");
        Assert.False(LayoutTable.NeverShareALine(0, sizeof(long), 7 + CacheLine.Size - 1, sizeof(long)), "One byte short of a line passed.");
        Assert.True(LayoutTable.NeverShareALine(0, sizeof(long), 7 + CacheLine.Size, sizeof(long)));
        Assert.True(LayoutTable.NeverShareALine(7 + CacheLine.Size, sizeof(long), 0, sizeof(long)), "The check must not depend on argument order.");

        var table = new LayoutTable(nameof(Unpadded)).Add("Count", 0, sizeof(long)).Add("Stats", statsOffset, sizeof(long));
        var failure = Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => table.AssertNeverShareALine("Count", "Stats"));
        Assert.Contains("Type layout for 'Unpadded'", failure.Message); // The table is printed on failure.
        Assert.Contains("0..7: Count (8 bytes)", failure.Message);
    }

    private void AssertPerCpuLayout<T>(int count)
        where T : unmanaged
    {
        using var perCpu = new PerCpu<T>(count);
        byte* origin = (byte*)Unsafe.AsPointer(ref perCpu[0]);
        var table = new LayoutTable($"PerCpu<{typeof(T).Name}> (sizeof {sizeof(T)})", (nuint)origin);
        for (int cpu = 0; cpu < count; cpu++)
        {
            table.Add($"slot {cpu}", (byte*)Unsafe.AsPointer(ref perCpu[cpu]) - origin, sizeof(T));
        }

        output.WriteLine(table.ToString());
        int stride = PerCpu<T>.SlotStride;
        table.AssertTrue((nuint)origin % CacheLine.Size == 0, $"The base is not {CacheLine.Size}-byte aligned.");
        table.AssertTrue(stride % CacheLine.Size == 0 && stride >= sizeof(T), $"SlotStride {stride} is not a whole number of lines holding a {sizeof(T)}-byte slot.");
        for (int cpu = 1; cpu < count; cpu++)
        {
            table.AssertOffset($"slot {cpu}", (long)cpu * stride);
            table.AssertNeverShareALine($"slot {cpu - 1}", $"slot {cpu}");
        }
    }

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_countStorage")]
    private static extern ref object CountStorage(RwSemaphore sem);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_stats")]
    private static extern ref RwSemaphore.StatsLine Stats(RwSemaphore sem);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_readStripes")]
    private static extern ref StripedCounter ReadStripes(RwSemaphore sem);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_sleepLock")]
    private static extern ref object SleepLock(RwSemaphore sem);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_sleepers")]
    private static extern ref int Sleepers(RwSemaphore sem);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_writerOwnerThread")]
    private static extern ref int WriterOwnerThread(RwSemaphore sem);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_slots")]
    private static extern ref PerCpu<Srcu.Slot> Slots(Srcu srcu);

    [StructLayout(LayoutKind.Sequential)]
    private struct Unpadded
    {
        public long Count;
        public long Stats;
    }

    [StructLayout(LayoutKind.Sequential, Size = 128)]
    private struct Bytes128
    {
        public long First;
    }

    [StructLayout(LayoutKind.Sequential, Size = 200)]
    private struct Bytes200
    {
        public long First;
    }
}
