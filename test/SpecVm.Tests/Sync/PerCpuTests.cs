using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using SpecVm.Sync;

namespace SpecVm.Tests.Sync;

public sealed unsafe class PerCpuTests
{
    [Theory]
    [InlineData(-1)]
    [InlineData(4)]
    [InlineData(int.MinValue)]
    [InlineData(int.MaxValue)]
    public void BadCpuIdThrowsNamingCpu(int cpu)
    {
        using var perCpu = new PerCpu<long>(4);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => perCpu[cpu]);
        Assert.Equal("cpu", ex.ParamName);
        Assert.Equal(cpu, ex.ActualValue);
    }

    [Fact]
    public void ZeroCpusIsRejected() => Assert.Throws<ArgumentOutOfRangeException>(() => new PerCpu<long>(0));

    [Fact]
    public void SlotsAreLineAlignedAndSeparate()
    {
        const int Cpus = 4;
        using var perCpu = new PerCpu<Counters>(Cpus);
        for (int cpu = 0; cpu < Cpus; cpu++)
        {
            Assert.Equal(default, perCpu[cpu]); // Zeroed.
            Assert.True((nuint)Unsafe.AsPointer(ref perCpu[cpu]) % CacheLine.Size == 0, $"Slot {cpu} is not {CacheLine.Size}-byte aligned.");
        }

        Assert.Equal(CacheLine.Size, PerCpu<Counters>.SlotStride);
        Assert.Equal(PerCpu<Counters>.SlotStride, (long)Unsafe.ByteOffset(ref perCpu[0], ref perCpu[1]));

        // Each CPU writes only its own slot; every other slot keeps its own values.
        for (int cpu = 0; cpu < Cpus; cpu++)
        {
            perCpu[cpu].A = cpu + 1;
            perCpu[cpu].B = -(cpu + 1);
        }

        for (int cpu = 0; cpu < Cpus; cpu++)
        {
            Assert.Equal(cpu + 1, perCpu[cpu].A);
            Assert.Equal(-(cpu + 1), perCpu[cpu].B);
        }
    }

    [Theory]
    [InlineData(1, 128)]
    [InlineData(8, 128)]
    [InlineData(128, 128)]
    [InlineData(129, 256)]
    public void SlotStrideRoundsUpToWholeLines(int size, int stride)
    {
        int actual = size switch
        {
            1 => PerCpu<byte>.SlotStride,
            8 => PerCpu<long>.SlotStride,
            128 => PerCpu<Line>.SlotStride,
            _ => PerCpu<LinePlusOne>.SlotStride,
        };
        Assert.Equal(stride, actual);
    }

    [Fact]
    public void DisposedPerCpuRefusesAccess()
    {
        var perCpu = new PerCpu<long>(2);
        perCpu.Dispose();
        Assert.Throws<ObjectDisposedException>(() => perCpu[0]);
        perCpu.Dispose(); // Idempotent.
    }

    private struct Counters
    {
        public long A;
        public long B;
    }

    [StructLayout(LayoutKind.Sequential, Size = 128)]
    private struct Line
    {
        public byte First;
    }

    [StructLayout(LayoutKind.Sequential, Size = 129)]
    private struct LinePlusOne
    {
        public byte First;
    }
}
