// Fuzz target: a training checkpoint's metadata as `--resume` reads it (Checkpoint.readState:
// the safetensors file, the training state's JSON, its checks) and the model configuration that
// `eval`, `forward` and the plots read from weights metadata. What passes must describe a run
// that can continue: counters and sizes in range.

import ACONModels
import ACONTensor
import ACONTraining
import Foundation

func fuzzOne(_ bytes: [UInt8]) {
  let path = Scratch.write(bytes, name: "checkpoint.safetensors")
  if let (state, file) = try? Checkpoint.readState(URL(fileURLWithPath: path)) {
    require(state.epoch >= 0 && state.batchInEpoch >= 0 && state.iteration >= 0, "negative counter")
    require(state.optimizerSteps >= 0, "negative optimizer steps")
    require((try? state.configuration.validate()) != nil, "invalid configuration accepted")
    require((try? state.configuration.model.validate()) != nil, "invalid model configuration accepted")
    _ = file
  }
  if let file = try? SafeTensors.decode(Data(bytes)), let model = ModelConfiguration(metadata: file.metadata),
    (try? model.validate()) != nil
  {
    require(model.classes >= 1 && model.classes <= ModelConfiguration.maximumClasses, "class count")
    require(
      model.inputChannels >= 1 && model.inputChannels <= ModelConfiguration.maximumInputChannels,
      "input channels")
  }
}

func seedInputs() throws -> [(String, [UInt8])] {
  var configuration = TrainingConfiguration(
    model: ModelConfiguration(model: "mobilenetv1-0.25", activation: "acon-c", classes: 10, inputChannels: 1, smallInput: true),
    dataSet: .fashionMNIST)
  configuration.checkpointEvery = 5
  configuration.iterations = 20
  var state = TrainingState(configuration: configuration)
  state.epoch = 1
  state.batchInEpoch = 3
  state.iteration = 13
  state.optimizerSteps = 13
  state.epochSeconds = 1.5
  state.dropoutGenerators = ["classifier.0": RandomGenerator(seed: 3)]
  let json = String(decoding: try JSONEncoder().encode(state), as: UTF8.self)
  var metadata = configuration.model.metadata
  metadata["acon.training_state"] = json
  let tensors = [
    SafeTensors.Entry("model.fc.weight", Tensor(shape: [2, 2], values: [1, 2, 3, 4])),
    SafeTensors.Entry("model.bn.num_batches_tracked", Tensor(scalar: 13), dtype: .i64),
    SafeTensors.Entry("optimizer.fc.weight.momentum", Tensor(shape: [2, 2], values: [0, 0.5, 0, 1])),
  ]
  let fresh = TrainingState(configuration: configuration)
  var freshMetadata = configuration.model.metadata
  freshMetadata["acon.training_state"] = String(decoding: try JSONEncoder().encode(fresh), as: UTF8.self)
  return [
    ("checkpoint.safetensors", [UInt8](try SafeTensors.encode(tensors, metadata: metadata))),
    ("fresh-state.safetensors", [UInt8](try SafeTensors.encode([], metadata: freshMetadata))),
    ("weights-metadata.safetensors", [UInt8](try SafeTensors.encode([], metadata: configuration.model.metadata))),
  ]
}
