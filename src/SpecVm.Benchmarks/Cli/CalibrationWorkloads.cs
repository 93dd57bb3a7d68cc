using SpecVm.Mm;
using SpecVm.Smp;
using SpecVm.Workloads;

namespace SpecVm.Benchmarks.Cli;

/// <summary>
/// <c>calibrate</c>'s TLB-hit loop: one task reads 16 pages it has already faulted in, over and over, so every access
/// after the first round is a TLB hit. One operation is one access.
/// </summary>
internal sealed class TlbHitLoop : Workload
{
    /// <summary>Pages read in turn: far fewer than the TLB's entries, so none evicts another.</summary>
    private const int Pages = 16;

    /// <summary>Accesses per batch: long enough to amortise the harness's call, short for clean window edges.</summary>
    private const int Batch = 4096;

    private AddressSpace? _mm;
    private ulong _region;
    private long _sink;

    public override string Name => "calibrate-tlb-hit";

    public override string OperationUnit => "accesses";

    public override long MemoryBytes(int threads) => 16L << 20;

    public override IEnumerable<AddressSpace> AddressSpaces => _mm == null ? [] : [_mm];

    public override void Setup(Machine machine, Mm.FaultStrategy? strategy, int threads)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(strategy);
        _mm = new AddressSpace(machine, strategy, AddressSpaceOptions);
        _region = machine.Run(0, cpu =>
        {
            ulong region = _mm.Map(cpu, Pages * 4096UL, Protection.ReadWrite);
            for (int i = 0; i < Pages; i++)
            {
                _mm.Write(cpu, region + (ulong)(i * 4096), 1L);
            }

            return region;
        });
    }

    public override long RunOperationBatch(Cpu cpu, int task)
    {
        long sum = 0;
        for (int i = 0; i < Batch; i++)
        {
            _mm!.TryRead(cpu, _region + (ulong)((i % Pages) * 4096), out long v);
            sum += v;
        }

        _sink += sum; // keeps the reads from being dropped as dead code
        return Batch;
    }

    public override void Teardown() => _mm?.Dispose();
}
