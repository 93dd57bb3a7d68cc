using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Workloads;

/// <summary>
/// A workload the scaling harness can run: a loop step that each task (one per CPU) calls until told to stop.
/// Subclass it to measure your own access pattern.
/// </summary>
/// <remarks>
/// <para>
/// The harness (<c>ScalingExperiment</c>) builds a <see cref="Machine"/> with <c>threads + BackgroundTasks</c> CPUs
/// and at least <see cref="MemoryBytes"/> of physical memory, calls <see cref="Setup"/>, then runs
/// <see cref="RunOperationBatch"/> on CPUs 0..threads-1 (task i on CPU i) and <see cref="RunBackgroundBatch"/> on the
/// CPUs after them, in a loop, until the measurement is over; it then calls <see cref="Teardown"/> and disposes the
/// machine. Setup and Teardown run on the harness thread; a setup that must map memory does so with
/// <see cref="Machine.Run(int, Action{Cpu})"/>.
/// </para>
/// <para>
/// A batch should be short (well under a millisecond to a few milliseconds) so that the harness's window edges cut
/// few operations, and must not allocate managed memory: allocate per-task state in <see cref="Setup"/>.
/// </para>
/// <para>
/// <b>Region of interest.</b> Work a task must do on its own CPU before the part worth measuring (mapping and faulting in
/// its working set, say) would count toward the window if the warm-up ended before it did. A workload that overrides
/// <see cref="HasRegionOfInterest"/> to return true has each measured task call <see cref="BeginRegionOfInterest"/> once
/// that work is done; the harness then opens the window only when the warm-up is over <em>and</em> every measured task
/// has marked, so operations, counters, wait histograms and, in virtual time, the shared-line tally all count from
/// there (gem5's and PARSEC's region-of-interest hooks work the same way). Background tasks need not mark. A workload
/// that does not override it costs the harness nothing.
/// </para>
/// </remarks>
public abstract class Workload
{
    /// <summary>The name used in results and on the command line (lower case, words joined by '-').</summary>
    public abstract string Name { get; }

    /// <summary>True when the workload runs against the real kernel (the fault strategy is ignored).</summary>
    public virtual bool IsNative => false;

    /// <summary>Extra CPUs, after the measured tasks, that run <see cref="RunBackgroundBatch"/> (a writer, say).</summary>
    public virtual int BackgroundTasks => 0;

    /// <summary>What one operation is, for reports ("pages touched", "records searched").</summary>
    public virtual string OperationUnit => "operations";

    /// <summary>The physical memory the model needs for <paramref name="threads"/> tasks (headroom included).</summary>
    /// <param name="threads">Measured tasks.</param>
    public virtual long MemoryBytes(int threads) => 256L << 20;

    /// <summary>Creates address spaces, files and per-task state for <paramref name="threads"/> tasks.</summary>
    /// <param name="machine">The machine, already started.</param>
    /// <param name="strategy">The fault strategy to give the address spaces (null for native workloads).</param>
    /// <param name="threads">The number of measured tasks.</param>
    public abstract void Setup(Machine machine, FaultStrategy? strategy, int threads);

    /// <summary>One step of task <paramref name="task"/>'s loop, run on its CPU; returns the operations it completed.</summary>
    /// <param name="cpu">The CPU the task runs on.</param>
    /// <param name="task">The task index, 0..threads-1.</param>
    public abstract long RunOperationBatch(Cpu cpu, int task);

    /// <summary>One step of background task <paramref name="index"/> (0..<see cref="BackgroundTasks"/>-1); returns its operations.</summary>
    /// <param name="cpu">The CPU the background task runs on.</param>
    /// <param name="index">The background task index.</param>
    public virtual long RunBackgroundBatch(Cpu cpu, int index) => 0;

    /// <summary>
    /// True when every measured task marks the start of its region of interest with <see cref="BeginRegionOfInterest"/>,
    /// and the harness must wait for those marks before it opens the measured window (see the class remarks). Default false.
    /// </summary>
    public virtual bool HasRegionOfInterest => false;

    /// <summary>
    /// Called from a measured task's code on its CPU (in <see cref="RunOperationBatch"/>): everything this task does from
    /// here on is its region of interest. Only the first call per run counts; it costs one store. Ending the batch right
    /// after the mark keeps the window's edge exact in virtual time (where the edge is placed by proportion inside a batch).
    /// </summary>
    /// <param name="cpu">The CPU the task runs on (the one <see cref="RunOperationBatch"/> was given).</param>
    protected static void BeginRegionOfInterest(Cpu cpu)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        cpu.MarkRegionOfInterest();
    }

    /// <summary>
    /// Called by the harness when the measured window opens: after the warm-up and, with <see cref="HasRegionOfInterest"/>,
    /// every measured task's mark.
    /// </summary>
    public virtual void BeginMeasurement()
    {
    }

    /// <summary>Called when the measured window closes; adds workload-specific metrics.</summary>
    /// <param name="seconds">The window's length.</param>
    /// <param name="metrics">Where to add metrics (name → value).</param>
    public virtual void EndMeasurement(double seconds, IDictionary<string, double> metrics)
    {
    }

    /// <summary>
    /// Options for the address spaces <see cref="Setup"/> creates (targeted shootdowns, the munmap downgrade, the zap
    /// batch); null for the defaults. The built-in workloads honour it; <c>ScalingExperiment</c> sets it
    /// from <c>ScalingOptions.AddressSpaceOptions</c> before each setup.
    /// </summary>
    public AddressSpaceOptions? AddressSpaceOptions { get; set; }

    /// <summary>
    /// What each operation does to memory at the least (a page zeroed or copied) and each task's working set, for the
    /// harness's physical floor (<c>ScalingOptions.MeasureFloor</c>); null, the default, for a workload whose operation
    /// is not a page fault that fills a page.
    /// </summary>
    internal virtual FloorSpec? Floor => null;

    /// <summary>The model address spaces <see cref="Setup"/> created (for invariant checks between the run and <see cref="Teardown"/>); empty by default.</summary>
    public virtual IEnumerable<AddressSpace> AddressSpaces => [];

    /// <summary>The files <see cref="Setup"/> created (for invariant checks between the run and <see cref="Teardown"/>); empty by default.</summary>
    public virtual IEnumerable<SimFile> Files => [];

    /// <summary>Frees what <see cref="Setup"/> created. Called once every task has stopped.</summary>
    public abstract void Teardown();

    /// <inheritdoc/>
    public override string ToString() => Name;
}
