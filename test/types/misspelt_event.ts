// Must NOT compile: 'epoch_ennd' is no event of a Run, and epoch_end's payload has no 'mAP' field.
import { train } from 'yolo26-native';

const run = train({ model: 'yolo26n.yaml', data: 'data.yaml' });
run.on('epoch_ennd', (e) => console.log(e));
run.on('epoch_end', (e) => console.log(e.mAP));
