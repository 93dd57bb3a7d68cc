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

    /// <summary>Called by the harness when the measured window opens (after warm-up).</summary>
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
