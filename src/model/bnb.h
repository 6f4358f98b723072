// bnb.h: bitsandbytes 4-bit weights in Hugging Face safetensors checkpoints
// ("*-bnb-4bit", load_in_4bit with bnb_4bit_quant_type "nf4", with or
// without bnb_4bit_use_double_quant), read as qtune NF4 tensors without
// expanding them to floats: a quantized Linear's weight W is stored as
//   W                                   uint8 [out*in/2, 1] packed 4-bit codes
//   W.absmax                            float32 [blocks], or uint8 codes when nested
//   W.quant_map                         float32 [16], the NF4 code book
//   W.nested_absmax, W.nested_quant_map float32 [ceil(blocks/256)], [256] (double quantization)
//   W.quant_state.bitsandbytes__nf4     uint8: JSON {quant_type, blocksize, dtype, shape,
//                                       nested_blocksize, nested_dtype, nested_offset}
// (bitsandbytes functional.py QuantState.as_dict(packed=True)).
#ifndef QT_BNB_H
#define QT_BNB_H

#include <stdbool.h>

#include "io/safetensors.h"
#include "model/model.h"

// Whether tensor `name` of s has a bitsandbytes 4-bit quant state.
bool qt_bnb_is_4bit(const qt_st_set *s, const char *name);
// The NF4 tensor t (ne0 = in, ne1 = out, blocks in a buffer m owns) of the
// bitsandbytes weight `name` of m's files; QT_ERR (logged with the file,
// tensor and field) for FP4, other block sizes, a code book that is not NF4,
// or sizes that do not match the quant state.
int qt_bnb_load(qt_model *m, const char *name, qt_tensor *t);

#endif
