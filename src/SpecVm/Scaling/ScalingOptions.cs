using SpecVm.Faults;
using SpecVm.Workloads;
using SpecVm.Mm;

namespace SpecVm.Scaling;

/// <summary>What a <see cref="ScalingExperiment"/> runs.</summary>
public sealed class ScalingOptions
{
    /// <summary>The workloads (model and native).</summary>
    public IList<Workload> Workloads { get; init; } = [];

    /// <summary>The fault strategies each model workload runs with (native workloads run once, as "native").</summary>
    public IList<FaultStrategy> Strategies { get; init; } = [];

    /// <summary>Thread counts; null for 1..<see cref="Smp.Affinity.AllowedCores"/>.Count.</summary>
    public IList<int>? ThreadCounts { get; init; }

    /// <summary>Warm-up before each measured window.</summary>
    public TimeSpan Warmup { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>The measured window.</summary>
    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(1.5);

    /// <summary>Runs per point (a fresh machine each).</summary>
    public int Repeats { get; init; } = 3;

    /// <summary>Allow more measured threads than cores.</summary>
    public bool Oversubscribe { get; init; }

    /// <summary>
    /// After each model run, with every task stopped and before teardown, run the <see cref="Mm.InvariantChecker"/>
    /// over the workload's address spaces and files (and read the machine's violation log); a violation fails the
    /// experiment with an <see cref="InvalidOperationException"/> naming the point.
    /// </summary>
    public bool Verify { get; init; }

    /// <summary>
    /// Options for every model address space the workloads create (targeted shootdowns, the munmap downgrade, the zap
    /// batch; recorded in the result's settings), taking precedence over the workloads' own and the kernel profile's;
    /// null for each workload's own <see cref="Workload.AddressSpaceOptions"/>, or else the kernel profile's. Set on each
    /// workload before its setup.
    /// </summary>
    public Mm.AddressSpaceOptions? AddressSpaceOptions { get; init; }

    /// <summary>
    /// The Linux version the model behaves as (<see cref="Mm.KernelProfile"/>): it sets the machine's memory-management
    /// settings and, unless <see cref="AddressSpaceOptions"/> or a workload's own say otherwise, the address spaces'.
    /// Recorded in the result. Default: <see cref="Mm.KernelProfile.Default"/> (the newest).
    /// </summary>
    public Mm.KernelProfile KernelProfile { get; init; } = Mm.KernelProfile.Default;

    /// <summary>
    /// Run in virtual time instead of on real threads (model workloads only): every point is predicted by a
    /// deterministic simulation with this cost model, on any number of host cores; null (the default) measures.
    /// </summary>
    public Simulation.VirtualTimeOptions? VirtualTime { get; init; }

    /// <summary>
    /// Also measure the physical floor of each fault workload (<see cref="ScalingResult.Floors"/>): at every thread count,
    /// pinned threads zeroing (for copy-on-write workloads, copying) 4 KiB pages in memory of their own with the model's
    /// page kernels, for the same warm-up and window as the points, once per kind of floor and thread count (not per
    /// strategy). Measured runs only (ignored in virtual time); workloads whose operation fills no page have none.
    /// Default false, so a library run measures only what it asks for; the command line's <c>scale</c> turns it on
    /// (<c>--no-floor</c> turns it off).
    /// </summary>
    public bool MeasureFloor { get; init; }

    /// <summary>Progress reports (one per run started and finished); null for none.</summary>
    public IProgress<ScalingProgress>? Progress { get; init; }
}

/// <summary>A progress report from a running experiment.</summary>
/// <param name="Completed">Runs finished.</param>
/// <param name="Total">Runs in the experiment.</param>
/// <param name="Message">What is happening.</param>
public sealed record ScalingProgress(int Completed, int Total, string Message);
