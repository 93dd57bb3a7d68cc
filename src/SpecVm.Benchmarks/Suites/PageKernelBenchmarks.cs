using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using SpecVm.Faults;

namespace SpecVm.Benchmarks.Suites;

/// <summary>
/// The page clear and copy kernels of anonymous and copy-on-write faults against the runtime's own
/// <c>NativeMemory.Clear</c> and <c>Buffer.MemoryCopy</c> (the baselines), and their scalar fallbacks: the numbers
/// decide which kernel the fault path ships.
/// </summary>
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
[Config(typeof(BenchConfig))]
public unsafe class PageKernelBenchmarks
{
    private byte* _a;
    private byte* _b;

    /// <summary>Allocates two page-aligned pages.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _a = (byte*)NativeMemory.AlignedAlloc(4096, 4096);
        _b = (byte*)NativeMemory.AlignedAlloc(4096, 4096);
        new Span<byte>(_a, 4096).Fill(7);
    }

    /// <summary>Frees the pages.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        NativeMemory.AlignedFree(_a);
        NativeMemory.AlignedFree(_b);
    }

    /// <summary>The runtime's clear (baseline of "clear").</summary>
    [Benchmark(Baseline = true)]
    [BenchmarkCategory("clear")]
    public void NativeClear() => NativeMemory.Clear(_b, 4096);

    /// <summary>SpecVm's vector clear.</summary>
    [Benchmark]
    [BenchmarkCategory("clear")]
    public void VectorClear() => PageKernels.Clear(_b);

    /// <summary>SpecVm's scalar clear.</summary>
    [Benchmark]
    [BenchmarkCategory("clear")]
    public void ScalarClear() => PageKernels.ClearScalar(_b);

    /// <summary>The runtime's copy (baseline of "copy").</summary>
    [Benchmark(Baseline = true)]
    [BenchmarkCategory("copy")]
    public void BufferCopy() => Buffer.MemoryCopy(_a, _b, 4096, 4096);

    /// <summary>SpecVm's vector copy.</summary>
    [Benchmark]
    [BenchmarkCategory("copy")]
    public void VectorCopy() => PageKernels.Copy(_a, _b);

    /// <summary>SpecVm's scalar copy.</summary>
    [Benchmark]
    [BenchmarkCategory("copy")]
    public void ScalarCopy() => PageKernels.CopyScalar(_a, _b);
}
