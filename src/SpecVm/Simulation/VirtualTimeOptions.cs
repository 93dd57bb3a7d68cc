namespace SpecVm.Simulation;

/// <summary>
/// How the scaling harness runs in virtual time (docs/design.md §6): the cost model, the scheduling quantum, and the
/// warm-up and measured window in virtual time. Set <c>ScalingOptions.VirtualTime</c> to one to predict instead of measure.
/// </summary>
public sealed class VirtualTimeOptions
{
    /// <summary>The cost model (a preset or a user topology); the <c>host</c> preset by default.</summary>
    public CostModel Model { get; init; } = CostModel.Preset("host");

    /// <summary>
    /// How far a simulated CPU may run ahead of the earliest other one before it hands over (zero: exact order at every
    /// event). Larger is faster; docs/design.md §6 shows how the predictions move with it (within about 10% from 0.25
    /// to 4 µs on the default workloads at 32 CPUs), which is why the default is 2 µs.
    /// </summary>
    public TimeSpan Quantum { get; init; } = TimeSpan.FromTicks(20); // 2 µs

    /// <summary>Virtual warm-up before the measured window.</summary>
    public TimeSpan Warmup { get; init; } = TimeSpan.FromMilliseconds(1);

    /// <summary>The measured window, in virtual time.</summary>
    public TimeSpan Duration { get; init; } = TimeSpan.FromMilliseconds(4);

    /// <summary>
    /// Also run every point with the uncertain constants (<see cref="CostModel.UncertainConstants"/>) at half and at
    /// 1.5 times their values, and report the range as the point's band.
    /// </summary>
    public bool Band { get; init; } = true;

    /// <summary>Checks the values; throws naming the bad one.</summary>
    /// <exception cref="ArgumentException">A bad value.</exception>
    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(Model, nameof(Model));
        Model.Validate();
        if (Quantum < TimeSpan.Zero)
        {
            throw new ArgumentException("The quantum must not be negative.", nameof(Quantum));
        }

        if (Duration <= TimeSpan.Zero || Warmup < TimeSpan.Zero)
        {
            throw new ArgumentException("The virtual duration must be positive and the warm-up not negative.", nameof(Duration));
        }
    }
}
