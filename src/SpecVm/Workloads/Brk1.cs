using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Workloads;

/// <summary>
/// will-it-scale's brk1 ("brk increase/decrease of one page", tests/brk1.c) on the model: each task grows its heap by
/// one page and shrinks it back, over and over, touching nothing. One operation is one brk call (will-it-scale counts
/// two per loop, as here).
/// </summary>
/// <remarks>
/// <para>
/// The model has no <c>brk</c> system call; a heap is an anonymous read-write VMA, and growing it by a page is a fixed
/// mapping of the page just past its end, which merges into it (<c>vma_merge</c>, as <c>do_brk_flags</c> expands the
/// heap VMA in place), and shrinking is an unmap of that page (Linux's brk shrink is <c>do_vmi_align_munmap</c> too).
/// Each call is one mmap-lock write section and a VMA edit, no fault, no page, no shootdown: the curve is the mmap
/// lock's write side and the VMA index's edit cost, which is what brk1 measures on Linux.
/// </para>
/// <para>
/// Known difference: in <see cref="WorkloadMode.Threads"/>, will-it-scale's threads share one heap and race to set the
/// same break (most of their calls then change nothing); here each task has its own heap VMA in the shared address
/// space (1 GiB apart, so they never merge), and every call edits it. The mmap lock is contended the same way.
/// </para>
/// </remarks>
public sealed class Brk1 : Workload
{
    /// <summary>Loops per batch: each is two brk calls (grow, shrink), a few microseconds on the model.</summary>
    public const int LoopsPerBatch = 16;

    /// <summary>Where the first task's heap starts (a typical PIE heap address); each next task's is 1 GiB higher.</summary>
    public const ulong HeapBase = 0x5555_0000_0000;

    private const ulong HeapStride = 1UL << 30;
    private const ulong Page = Memory.PhysicalMemory.PageSize;

    private AddressSpace[] _spaces = [];

    /// <summary>Creates the workload.</summary>
    /// <param name="mode">Threads (one address space) or processes (one each).</param>
    public Brk1(WorkloadMode mode = WorkloadMode.Threads)
    {
        if (!Enum.IsDefined(mode))
        {
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "Not a WorkloadMode value.");
        }

        Mode = mode;
    }

    /// <summary>Threads or processes.</summary>
    public WorkloadMode Mode { get; }

    /// <inheritdoc/>
    public override string Name => WorkloadCatalog.ModeName("brk1", Mode);

    /// <inheritdoc/>
    public override string OperationUnit => "brk calls";

    /// <inheritdoc/>
    public override long MemoryBytes(int threads) => 16L << 20; // Nothing is touched: a few page-table pages.

    /// <inheritdoc/>
    public override void Setup(Machine machine, FaultStrategy? strategy, int threads)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(strategy);
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        _spaces = new AddressSpace[threads];
        AddressSpace? shared = Mode == WorkloadMode.Threads ? new AddressSpace(machine, strategy, AddressSpaceOptions) : null;
        for (int i = 0; i < threads; i++)
        {
            _spaces[i] = shared ?? new AddressSpace(machine, strategy, AddressSpaceOptions);
        }

        // Each task's heap starts as one page (sbrk(0) of a process that has used its heap), mapped at setup on CPU 0.
        AddressSpace[] spaces = _spaces;
        machine.Run(0, cpu =>
        {
            for (int i = 0; i < spaces.Length; i++)
            {
                spaces[i].Map(cpu, Page, Protection.ReadWrite, fixedAddress: HeapOf(i));
            }
        });
    }

    /// <inheritdoc/>
    public override long RunOperationBatch(Cpu cpu, int task)
    {
        AddressSpace mm = _spaces[task];
        ulong top = HeapOf(task) + Page; // The break: the heap is [HeapOf(task), top).
        for (int i = 0; i < LoopsPerBatch; i++)
        {
            mm.Map(cpu, Page, Protection.ReadWrite, fixedAddress: top); // brk(top + page): merges into the heap VMA.
            mm.Unmap(cpu, top, Page);                                  // brk(top): the heap shrinks back.
        }

        return 2 * LoopsPerBatch;
    }

    /// <inheritdoc/>
    public override IEnumerable<AddressSpace> AddressSpaces => _spaces.Distinct();

    /// <inheritdoc/>
    public override void Teardown()
    {
        foreach (AddressSpace mm in _spaces.Distinct())
        {
            mm.Dispose();
        }

        _spaces = [];
    }

    private static ulong HeapOf(int task) => HeapBase + ((ulong)task * HeapStride);
}
