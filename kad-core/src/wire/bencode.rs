use super::*;
pub(crate) fn encode(_msg: &Message, _out: &mut Vec<u8>) {}
pub(crate) fn decode(_bytes: &[u8]) -> Result<Message, DecodeError> {
    Err(DecodeError::Syntax)
}
