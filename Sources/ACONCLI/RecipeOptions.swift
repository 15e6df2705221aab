import ACONModels
import ACONTraining
import ArgumentParser

/// The training flags `acon train` and `acon compare` share: data, length and the recipe.
struct RecipeOptions: ParsableArguments {
  @Option(help: "Data set.") var dataset = DataSetName.fashionMNIST
  @Option(help: "Data directory (default: the data set's standard location).") var data: String?
  @Option(help: "Epochs.") var epochs = 1
  @Option(help: "Stop after this many iterations in total (the schedule spans them).")
  var iterations: Int?
  @Option(
    help: "Batch size (per rank under mpirun: the global batch is this times the number of ranks).")
  var batchSize = 128
  @Option(help: "Base learning rate.") var lr: Float = 0.1
  @Option(help: "Learning-rate decay per iteration (linear is the reference's).") var schedule =
    LearningRateSchedule.Decay.linear
  @Option(help: "Warm-up iterations.") var warmup = 0
  @Option(help: "Optimizer (sgd is the reference's).") var optimizer = TrainingConfiguration
    .OptimizerKind.sgd
  @Option(help: "SGD momentum.") var momentum: Float = 0.9
  @Option(help: "Weight decay on conv and linear weights (never on p1, p2, beta, BN or biases).")
  var weightDecay: Float = 4e-5
  @Option(help: "Label smoothing.") var labelSmoothing: Float = 0.1
  @Option(help: "Use only the first N training images.") var trainLimit: Int?
  @Option(help: "Use only the first N test images.") var testLimit: Int?
  @Flag(help: "Turn off data augmentation.") var noAugment = false

  /// A configuration for `model` with `activation` and these flags.
  func configuration(model: String, activation: String, seed: UInt64) throws
    -> TrainingConfiguration
  {
    var config = TrainingConfiguration(
      model: ModelConfiguration(model: model, activation: activation), dataSet: dataset)
    config.dataDirectory = data
    config.epochs = epochs
    config.iterations = iterations
    config.batchSize = batchSize
    config.learningRate = lr
    config.schedule = schedule
    config.warmupIterations = warmup
    config.optimizer = optimizer
    config.momentum = momentum
    config.weightDecay = weightDecay
    config.labelSmoothing = labelSmoothing
    config.seed = seed
    config.trainLimit = trainLimit
    config.testLimit = testLimit
    config.augment = !noAugment
    try config.validate()
    return config
  }
}
